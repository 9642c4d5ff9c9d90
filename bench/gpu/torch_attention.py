"""PyTorch's attention on the UNet's self-attention shapes, for the WGSL kernel microbenchmark.

    python bench/gpu/torch_attention.py OUT.json

F.scaled_dot_product_attention in float16 (the flash / memory-efficient kernels PyTorch picks
on the GPU) on bench/gpu/kernel_cases.py's attention shapes, timed with CUDA events after a
warm-up: what our subgroup-matrix attention (bench/gpu/wgsl_kernels.mjs) is up against.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(out: str) -> None:
    import torch
    import torch.nn.functional as F

    from kernel_cases import ATTENTION, UNET_ATTENTION

    rows = []
    for name, a in (ATTENTION | UNET_ATTENTION).items():
        q, k, v = (torch.randn(a.batch, a.heads, n, a.head_dim, device="cuda", dtype=torch.float16)
                   for n in (a.queries, a.keys, a.keys))
        for _ in range(20):
            F.scaled_dot_product_attention(q, k, v, scale=a.scale)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(5):
            start.record()
            for _ in range(20):
                F.scaled_dot_product_attention(q, k, v, scale=a.scale)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 20)
        flop = 4 * a.batch * a.heads * a.queries * a.keys * a.head_dim
        rows.append({"name": name, "ms": min(times), "tflops": flop / min(times) / 1e9})
        print(json.dumps(rows[-1]))
    Path(out).write_text(json.dumps({"torch": torch.__version__, "cases": rows}, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(sys.argv[1])
