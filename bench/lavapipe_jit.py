"""How long lavapipe takes to compile an attention kernel, by its keys a step (issue 17).

    python bench/lavapipe_jit.py [--keys-per-step 4 8 16 32] [--timeout 300]

lavapipe (Mesa 25's Vulkan driver on the CPU: what CI, verify and the page's tests run WebGPU
on) compiles a shader with LLVM when a pipeline is first dispatched. The attention kernel
(stages/passes/simt_attention.py) unrolls a step of its keys, and the time to compile grows
faster than the step: the trained model's VAE attention (one head of 64 at 64 tokens) at 32 keys a step held
its decoder's verify for about 20 minutes. For each step length this writes the kernel's WGSL
(float32, the shapes model's VAE attention) and times one dispatch of it alone
(web/test/first_dispatch.mjs), Mesa's shader cache off. Writes bench/results/lavapipe_jit.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.passes import simt_attention  # noqa: E402

BINDINGS = """@group(0) @binding(0) var<storage, read> k : array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out : array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> q : array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v : array<vec4<f32>>;

"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys-per-step", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for one compile")
    args = p.parse_args()
    # the shapes model's VAE mid-block attention: batch 1, 64 tokens, one head of 64
    rows_a_workgroup = simt_attention.SMALL[0]
    base = simt_attention.SimtAttention(1, 64, 64, 1, 64, 64 ** -0.5, "float32",
                                        rows=rows_a_workgroup)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kt in args.keys_per_step:
            a = dataclasses.replace(base, kt=kt)
            name = simt_attention.kernel_name(a)
            shader = Path(tmp) / f"{name}.wgsl"
            shader.write_text(BINDINGS + simt_attention.entry_point(a, name, "q", "k", "v", "out"))
            row = {"keys_per_step": kt, "kernel": name, "wgsl_bytes": shader.stat().st_size}
            try:
                proc = subprocess.run(["node", str(REPO / "web/test/first_dispatch.mjs"),
                                       str(shader)], cwd=REPO / "web", capture_output=True,
                                      text=True, timeout=args.timeout,
                                      env={**os.environ, "MESA_SHADER_CACHE_DISABLE": "true"})
                if proc.returncode:
                    raise SystemExit(proc.stderr[-2000:])
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                row.update(adapter=result["adapter"],
                           first_dispatch_s=round(result["firstDispatchMs"] / 1000, 2))
            except subprocess.TimeoutExpired:
                row["first_dispatch_s"] = f"over {args.timeout:g}"
            print(row, flush=True)
            rows.append(row)
    out = REPO / "bench" / "results" / "lavapipe_jit.json"
    out.write_text(json.dumps({"what": __doc__.split("\n\n")[2].replace("\n", " "),
                               "cpu_cores": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
