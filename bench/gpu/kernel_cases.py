"""Write the subgroup-matrix GEMM microbenchmark's cases: SD v1.5 UNet GEMM shapes x tilings.

    python bench/gpu/gemm_cases.py OUT.json

Each case is a whole WGSL shader (three storage buffers a, b, c, our entry point from
stages/passes/subgroup_matrix_gemm.py) with its sizes and grid, for bench/gpu/wgsl_gemm.mjs to
run and check on the device. The shapes are the UNet's convolutions as GEMMs (weight x im2col,
CFG batch 2, 64x64 latents) and its linear layers (tokens x weight^T).
"""

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from stages.passes.subgroup_matrix_gemm import DIRECTIVES, ENABLES, Gemm, entry_point  # noqa: E402

SHAPES = {
    "conv320@64": Gemm(320, 4096, 2880, 2, 0, 2880 * 4096),
    "conv640@32": Gemm(640, 1024, 5760, 2, 0, 5760 * 1024),
    "conv1280@16": Gemm(1280, 256, 11520, 2, 0, 11520 * 256),
    "conv1280@8": Gemm(1280, 64, 11520, 2, 0, 11520 * 64),
    "conv1x1_640@32": Gemm(640, 1024, 320, 2, 0, 320 * 1024),
    "linear320@64": Gemm(8192, 320, 320, 1, b_transposed=True),
    "geglu320@64": Gemm(8192, 2560, 320, 1, b_transposed=True),
    "ff320@64": Gemm(8192, 320, 1280, 1, b_transposed=True),
    "vae512@64": Gemm(512, 4096, 4608, 1, 0, 4608 * 4096),
    "vae256@256": Gemm(256, 65536, 2304, 1, 0, 2304 * 65536),
    "square4096": Gemm(4096, 4096, 4096, 1),
}
TILINGS = [(2, 4, 1, 1), (4, 4, 1, 1), (4, 2, 1, 1), (2, 2, 1, 1), (2, 4, 2, 2), (4, 4, 2, 2)]
SPLITS = (1, 2, 4, 8)


def shader(g: Gemm) -> str:
    head = "".join(f"enable {e};\n" for e in ENABLES) + "".join(d + "\n" for d in DIRECTIVES)
    head += ("@group(0) @binding(0) var<storage, read> A : array<f16>;\n"
             "@group(0) @binding(1) var<storage, read> B : array<f16>;\n"
             "@group(0) @binding(2) var<storage, read_write> P : array<f32>;\n\n")
    return head + entry_point(g, "main", "A", "B", "P")


def main(out: str) -> None:
    cases = []
    for name, base in SHAPES.items():
        for tm, tn, wm, wn in TILINGS:
            for splits in SPLITS:
                g = replace(base, tm=tm, tn=tn, wm=wm, wn=wn, splits=splits)
                if not g.fits() or (splits > 1 and g.k_slice < 256):
                    continue
                cases.append({"name": f"{name}/{tm}x{tn}x{wm}x{wn}/s{splits}", "gemm": asdict(g),
                              "grid": g.grid, "flop": g.flop, "wgsl": shader(g)})
    Path(out).write_text(json.dumps(cases))
    print(f"{len(cases)} cases -> {out}")


if __name__ == "__main__":
    main(sys.argv[1])
