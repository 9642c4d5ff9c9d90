"""Write the WGSL kernel microbenchmark's cases: SD v1.5 UNet shapes x kernel variants.

    python bench/gpu/kernel_cases.py OUT.json [gemm] [staged] [simt] [simt_linear] [simt_attention]
                                               [simt_attention2] [simt_attention3] [sm_conv]
                                               [attention] [layout]

Each case is a whole WGSL shader (storage buffers in binding order, our entry point `main` from
stages/passes/subgroup_matrix_gemm.py, simt_gemm.py or subgroup_matrix_attention.py), its sizes,
grid and kind,
for bench/gpu/wgsl_kernels.mjs to run, check and time on the device. The GEMM shapes are the
UNet's convolutions as GEMMs (weight x im2col, CFG batch 2, 64x64 latents) and its linear layers
(tokens x weight^T); the attention shapes its self-attention at 64x64 and 32x32 latents.
"""

import json
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from stages.passes import simt_attention, simt_gemm  # noqa: E402
from stages.passes import subgroup_matrix_attention as sma  # noqa: E402
from stages.passes.subgroup_matrix import MIN_K_SLICE, plan  # noqa: E402
from stages.passes.subgroup_matrix_gemm import DIRECTIVES, ENABLES, Gemm, entry_point  # noqa: E402

SHAPES = {
    "conv320@64": Gemm(320, 4096, 2880, 2, 0, 2880 * 4096),
    "conv640@32": Gemm(640, 1024, 5760, 2, 0, 5760 * 1024),
    "conv1280@16": Gemm(1280, 256, 11520, 2, 0, 11520 * 256),
    "conv1280@8": Gemm(1280, 64, 11520, 2, 0, 11520 * 64),
    "conv1x1_640@32": Gemm(640, 1024, 320, 2, 0, 320 * 1024),
    "linear320@64": Gemm(8192, 320, 320, 1, b_transposed=True),
    "linear640@32": Gemm(2048, 640, 640, 1, b_transposed=True),
    "linear1280@16": Gemm(512, 1280, 1280, 1, b_transposed=True),
    "geglu320@64": Gemm(8192, 2560, 320, 1, b_transposed=True),
    "geglu640@32": Gemm(2048, 5120, 640, 1, b_transposed=True),
    "geglu1280@16": Gemm(512, 10240, 1280, 1, b_transposed=True),
    "ff320@64": Gemm(8192, 320, 1280, 1, b_transposed=True),
    "ff640@32": Gemm(2048, 640, 2560, 1, b_transposed=True),
    "ff1280@16": Gemm(512, 1280, 5120, 1, b_transposed=True),
    "square4096": Gemm(4096, 4096, 4096, 1),
}
TILINGS = [(2, 4, 1, 1), (4, 4, 1, 1), (4, 2, 1, 1), (2, 2, 1, 1), (2, 4, 2, 2), (4, 4, 2, 2)]
SPLITS = (1, 2, 4, 8, 16)
ATTENTION = {
    "self@64": sma.Attention(2, 4096, 4096, 8, 40, 1 / math.sqrt(40)),
    "self@32": sma.Attention(2, 1024, 1024, 8, 80, 1 / math.sqrt(80)),
    # scores spread wide (a few keys take most of each row): the softmax's range in float16
    "self@32/scale1": sma.Attention(2, 1024, 1024, 8, 80, 1.0),
}
# (rows, keys a step, rows an invocation, parts, prefetch): the picked tilings without and with
# the next step's K and V loaded into registers during this one, and neighbours
SIMT_ATTENTION_PREFETCH = ((256, 32, 2, 1, 0), (256, 32, 2, 1, 1), (256, 16, 2, 1, 0),
                           (256, 16, 2, 1, 1), (128, 16, 2, 1, 0), (128, 16, 2, 1, 1),
                           (128, 32, 2, 1, 1), (512, 32, 2, 1, 0), (512, 32, 2, 1, 1),
                           (64, 16, 1, 1, 0), (64, 16, 1, 1, 1), (128, 16, 1, 1, 1),
                           (256, 16, 1, 1, 1), (64, 32, 1, 1, 1))
# the cross-attention: the 77 tokens of the prompt's embedding as keys
CROSS_ATTENTION = {
    "cross@64": sma.Attention(2, 4096, 77, 8, 40, 1 / math.sqrt(40)),
    "cross@32": sma.Attention(2, 1024, 77, 8, 80, 1 / math.sqrt(80)),
}
# every attention of the SD v1.5 UNet step: self- and cross-attention (77 keys) at each latent size
UNET_ATTENTION = {
    **{f"self@{n}": sma.Attention(2, n * n, n * n, 8, d, 1 / math.sqrt(d))
       for n, d in ((64, 40), (32, 80), (16, 160), (8, 160))},
    **{f"cross@{n}": sma.Attention(2, n * n, 77, 8, d, 1 / math.sqrt(d))
       for n, d in ((64, 40), (32, 80), (16, 160), (8, 160))},
}
# (subgroups, row tiles, keys a step, prefetch) of the matrix units' attention, by head_dim, for
# self-attention and for the 77-key cross-attention
FLASH = {
    40: ((4, 2, 16, 1), (2, 2, 16, 1), (2, 2, 32, 1), (4, 1, 16, 1), (4, 1, 32, 1), (2, 1, 32, 1),
         (1, 2, 16, 1), (1, 2, 32, 0), (8, 1, 16, 1), (2, 2, 16, 0)),
    80: ((4, 2, 16, 1), (2, 2, 16, 1), (4, 1, 16, 1), (4, 1, 32, 1), (2, 1, 16, 1), (8, 1, 16, 1),
         (2, 1, 32, 0), (1, 2, 16, 0)),
    160: ((4, 1, 16, 1), (2, 1, 16, 0), (1, 1, 16, 0), (2, 2, 16, 0), (4, 2, 16, 1), (8, 1, 16, 1)),
}
FLASH_CROSS = {40: ((4, 1, 16, 1), (2, 1, 16, 1)), 80: ((4, 1, 16, 1), (2, 1, 16, 1)),
               160: ((4, 1, 16, 1), (2, 1, 16, 0), (1, 1, 16, 0))}


# (rows a workgroup, keys a step, rows an invocation, parts of the keys): the SIMT attention
SIMT_ATTENTION = ((64, 32, 1, 1), (64, 16, 1, 1), (128, 32, 2, 1), (128, 16, 2, 1),
                  (64, 32, 2, 1), (256, 32, 2, 1), (128, 32, 1, 1),
                  (64, 16, 2, 2), (64, 16, 1, 2), (64, 8, 2, 4), (128, 16, 2, 2), (64, 8, 1, 4))


def shader(buffers: list[tuple[str, str, str]], body: str, enables=ENABLES,
           directives=DIRECTIVES) -> str:
    head = "".join(f"enable {e};\n" for e in enables) + "".join(d + "\n" for d in directives)
    head += "".join(f"@group(0) @binding({i}) var<storage, {access}> {name} : array<{ty}>;\n"
                    for i, (name, access, ty) in enumerate(buffers))
    return head + "\n" + body


def gemm_case(name: str, g: Gemm) -> dict:
    bufs = [("A", "read", g.operand_type), ("B", "read", g.b_type), ("P", "read_write", "f32")]
    return {"name": name, "kind": "gemm", "params": asdict(g), "grid": g.grid, "flop": g.flop,
            "wgsl": shader(bufs, entry_point(g, "main", "A", "B", "P"))}


def simt_case(name: str, g: simt_gemm.SimtGemm) -> dict:
    bufs = [("A", "read", g.a_type), ("B", "read", g.b_type), ("P", "read_write", g.p_type)]
    return {"name": name, "kind": "gemm", "params": asdict(g), "grid": g.grid, "flop": g.flop,
            "wgsl": shader(bufs, simt_gemm.entry_point(g, "main", "A", "B", "P"),
                           simt_gemm.ENABLES[g.dtype], ())}


# the SIMT kernel's tilings: (bm, bn, tm, tn, bk), all within WebGPU's guaranteed limits
SIMT = [(128, 128, 8, 8, 8), (128, 64, 8, 8, 8), (64, 128, 8, 8, 8), (64, 64, 8, 8, 8),
        (64, 64, 4, 4, 16), (32, 64, 4, 4, 16)]


def simt_cases(shapes=SHAPES, tilings=SIMT, dtypes=("float32", "float16"),
               min_k_slice=MIN_K_SLICE) -> list[dict]:
    """Per shape and operand type: each SIMT tiling unsplit, and at each split up to the one
    whose grid first exceeds 1056 workgroups (8 a streaming multiprocessor on the H200)."""
    cases = []
    for name, base in shapes.items():
        for dtype in dtypes:
            for bm, bn, tm, tn, bk in tilings:
                for splits in SPLITS:
                    g = simt_gemm.SimtGemm(base.m, base.n, base.k, base.batch, base.a_batch_stride,
                                           base.b_batch_stride, base.b_transposed, splits, dtype,
                                           bm, bn, tm, tn, bk)
                    if not g.fits():
                        continue
                    if splits > 1 and (g.k_slice < min_k_slice
                                       or g.grid[0] * g.grid[1] // 2 >= 1056):
                        continue
                    cases.append(simt_case(f"{name}/{dtype}/simt/{bm}x{bn}x{tm}x{tn}x{bk}/s{splits}", g))
    return cases


def gemm_cases(shapes=SHAPES, tilings=TILINGS, split_counts=SPLITS,
               min_k_slice=MIN_K_SLICE) -> list[dict]:
    """Each shape x tiling x split that fits, k slices no thinner than plan() would cut."""
    cases = []
    for name, base in shapes.items():
        for tm, tn, wm, wn in tilings:
            for splits in split_counts:
                g = replace(base, tm=tm, tn=tn, wm=wm, wn=wn, splits=splits)
                if not g.fits() or (splits > 1 and g.k_slice < min_k_slice):
                    continue
                cases.append(gemm_case(f"{name}/{tm}x{tn}x{wm}x{wn}/s{splits}", g))
    return cases


# staged through workgroup memory: (tm, tn, wm, wn, bk, stages)
STAGED = [(4, 4, 2, 2, 32, 2), (2, 4, 2, 2, 32, 2), (4, 2, 2, 2, 32, 2), (2, 2, 2, 2, 32, 2),
          (2, 4, 4, 2, 32, 2), (4, 4, 2, 2, 16, 2), (4, 4, 2, 2, 32, 1), (2, 2, 4, 4, 32, 2)]
WORKGROUP_BYTES = 49152    # the H200's maxComputeWorkgroupStorageSize under Dawn


def staged_cases(shapes=SHAPES, tilings=STAGED, min_k_slice=MIN_K_SLICE) -> list[dict]:
    """Per shape: the direct kernel plan() picks, then each staged tiling unsplit and at the
    splits that double a grid of fewer than 660 workgroups (about one wave), up to 2640."""
    cases = []
    for name, base in shapes.items():
        chosen = plan(base.m, base.n, base.k, base.batch, base.b_transposed)
        chosen = replace(chosen, a_batch_stride=base.a_batch_stride, b_batch_stride=base.b_batch_stride)
        cases.append(gemm_case(f"{name}/direct/{chosen.tm}x{chosen.tn}/s{chosen.splits}", chosen))
        for tm, tn, wm, wn, bk, stages in tilings:
            for splits in SPLITS:
                g = replace(base, tm=tm, tn=tn, wm=wm, wn=wn, bk=bk, stages=stages, splits=splits)
                if not g.fits() or g.workgroup_bytes > WORKGROUP_BYTES:
                    continue
                wgs = g.grid[0] * g.grid[1]
                if splits > 1 and (g.k_slice < min_k_slice or wgs > 2640 or wgs // 2 >= 660):
                    continue
                cases.append(gemm_case(f"{name}/staged/{tm}x{tn}x{wm}x{wn}/bk{bk}/st{stages}/s{splits}", g))
    return cases


def simt_attention_case(name: str, a: simt_attention.SimtAttention) -> dict:
    vec = f"vec4<{simt_gemm.WGSL_TYPE[a.dtype]}>"
    bufs = [("Q", "read", vec), ("K", "read", vec), ("V", "read", vec), ("O", "read_write", vec)]
    return {"name": name, "kind": "attention", "params": asdict(a), "grid": a.grid,
            "flop": a.flop, "wgsl": shader(bufs, simt_attention.entry_point(a, "main", "Q", "K", "V", "O"),
                                           simt_gemm.ENABLES[a.dtype], ())}


def simt_attention_cases(shapes=ATTENTION, dtypes=("float32", "float16"),
                         tilings=((64, 32, 1, 1), (64, 16, 1, 1), (128, 32, 1, 1), (32, 32, 1, 1))
                         ) -> list[dict]:
    """Each attention shape x dtype x (rows a workgroup, keys a step, rows an invocation,
    parts of the keys[, prefetch]) that fits."""
    cases = []
    for name, a in shapes.items():
        for dtype in dtypes:
            for rows, kt, per, parts, *prefetch in tilings:
                v = simt_attention.SimtAttention(a.batch, a.queries, a.keys, a.heads, a.head_dim,
                                                 a.scale, dtype, rows, kt, per, parts, *prefetch)
                if v.fits():
                    cases.append(simt_attention_case(
                        f"{name}/{dtype}/simt/r{rows}t{kt}i{per}p{parts}f{v.prefetch}", v))
    return cases


def attention_case(name: str, a: sma.Attention) -> dict:
    bufs = [("Q", "read", "f16"), ("K", "read", "vec4<f16>"), ("V", "read", "vec4<f16>"),
            ("O", "read_write", "f16")]
    return {"name": name, "kind": "attention", "params": asdict(a) | {"dtype": a.dtype},
            "grid": a.grid, "flop": a.flop,
            "wgsl": shader(bufs, sma.entry_point(a, "main", "Q", "K", "V", "O"))}


def attention_cases(shapes, tilings) -> list[dict]:
    """Each attention shape x (subgroups, row tiles, keys a step, prefetch) of the matrix units'
    attention (stages/passes/subgroup_matrix_attention.py) that fits."""
    cases = []
    for name, a in shapes.items():
        for w, r, kt, f in tilings:
            v = sma.Attention(a.batch, a.queries, a.keys, a.heads, a.head_dim, a.scale, w, r, kt, f)
            if v.fits():
                cases.append(attention_case(f"{name}/flash/w{w}r{r}t{kt}f{f}", v))
    return cases


# the 3x3 convolutions' geometry (ci, h, w, kh, kw, sh, sw, pt, pl, wo), for GEMMs that read
# their input in place
CONV_GEOMETRY = {
    "conv320@64": (320, 64, 64, 3, 3, 1, 1, 1, 1, 64),
    "conv640@32": (640, 32, 32, 3, 3, 1, 1, 1, 1, 32),
    "conv1280@16": (1280, 16, 16, 3, 3, 1, 1, 1, 1, 16),
    "conv1280@8": (1280, 8, 8, 3, 3, 1, 1, 1, 1, 8),
}


def sm_conv_cases() -> list[dict]:
    """Each 3x3 convolution's GEMM on the matrix units as plan() picks it, over its im2col and
    reading its input in place."""
    cases = []
    for name, geometry in CONV_GEOMETRY.items():
        base = SHAPES[name]
        for label, conv in (("im2col", ()), ("in_place", geometry)):
            g = plan(base.m, base.n, base.k, base.batch, False, conv)
            cases.append(gemm_case(f"{name}/{label}/s{g.splits}", g))
    return cases


def layout_cases() -> list[dict]:
    """The convolutions' GEMMs (and the square one) with B as stored today, k x n (im2col's
    rows), and stored n x k (read column-major, as the linear layers' weights are), each at the
    tiling and split plan() picks: is a convolution faster with its im2col transposed?"""
    cases = []
    for name, base in SHAPES.items():
        if not name.startswith(("conv", "square")):
            continue
        g = plan(base.m, base.n, base.k, base.batch, False)
        for transposed in (False, True):
            shape = {f"{name}/{'nk' if transposed else 'kn'}": replace(
                base, b_transposed=transposed, b_batch_stride=base.b_batch_stride)}
            cases += gemm_cases(shape, [(g.tm, g.tn, g.wm, g.wn)], (g.splits,))
    return cases


def main(out: str, kinds: list[str]) -> None:
    cases = []
    if "gemm" in kinds:
        cases += gemm_cases()
    if "staged" in kinds:
        cases += staged_cases()
    if "simt" in kinds:
        cases += simt_cases()
    if "simt_linear" in kinds:   # the linear layers' shapes (and the 1x1 convolution's), float32
        shapes = {k: v for k, v in SHAPES.items()
                  if not k.startswith(("conv", "square")) or k.startswith("conv1x1")}
        tilings = [(128, 128, 8, 8, 8), (128, 64, 8, 8, 8), (64, 128, 8, 8, 8), (64, 64, 4, 4, 16)]
        cases += simt_cases(shapes, tilings, ("float32",))
    if "simt_attention" in kinds:
        cases += simt_attention_cases()
    if "simt_attention3" in kinds:   # the next step's K and V prefetched into registers
        shapes = {k: v for k, v in ATTENTION.items() if "scale1" not in k}
        cases += simt_attention_cases(shapes | {"cross@32": CROSS_ATTENTION["cross@32"]},
                                      tilings=SIMT_ATTENTION_PREFETCH)
    if "simt_attention2" in kinds:   # rows an invocation, and the cross-attention's 77 keys
        cases += simt_attention_cases({k: v for k, v in ATTENTION.items() if "scale1" not in k}
                                      | CROSS_ATTENTION, tilings=SIMT_ATTENTION)
    if "layout" in kinds:
        cases += layout_cases()
    if "sm_conv" in kinds:
        cases += sm_conv_cases()
    if "attention" in kinds:   # the matrix units' attention on every UNet attention, and SIMT's
        simt = []
        for name, a in UNET_ATTENTION.items():
            self_ = name.startswith("self")
            cases += attention_cases({name: a}, (FLASH if self_ else FLASH_CROSS)[a.head_dim])
            p = simt_attention.plan(a.batch, a.queries, a.keys, a.heads, a.head_dim, a.scale,
                                    "float16")
            if p is not None and not self_:
                simt.append(simt_attention_case(f"{name}/float16/simt/planned", p))
        cases += attention_cases({"self@32/scale1": ATTENTION["self@32/scale1"]}, ((4, 1, 16, 1),))
        cases += simt
    Path(out).write_text(json.dumps(cases))
    print(f"{len(cases)} cases -> {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["gemm", "attention"])
