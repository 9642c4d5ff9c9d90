"""float16 convolutions and linear layers as GEMMs on the matrix units (the -sm variants).

Each R.nn.conv2d and each R.matmul of a 2-D weight with float16 operands (what to_float16
leaves) becomes a call of the subgroup-matrix GEMM (stages/passes/subgroup_matrix_gemm.py),
through the rewrite the GEMM passes share (stages/passes/gemm_rewrite.py). GEMMs that fit no
tiling here (k not a multiple of 16: conv_in; n not one of 16: the 4-channel conv_out) are left
to the SIMT GEMM pass that follows (stages/passes/simt.py).

Runs after to_float16 and flash_attention, before transpose_matmul (which would fuse the
transposed weights away first).
"""

from __future__ import annotations

import re

from stages.engine.config import WORKGROUP_STORAGE
from stages.passes.gemm_rewrite import Kernels, b_batch_stride, make_pass, reading_in_place
from stages.passes.subgroup_matrix_gemm import TILE, Gemm

# Tilings (tm, tn, wm, wn, bk, stages) in order of preference, each with the workgroups a GEMM
# should have before its k is split. Measured on the H200 on every UNet GEMM shape
# (bench/results/h200/wgsl_kernels/run5_staged/, each kernel timed after 300 ms of dispatches):
# operands staged through workgroup memory by four subgroups of 4x4 tiles (128x128 blocks, 32
# of k per stage) took the UNet's GEMMs from 2.24 to 1.06 ms summed over one call of each shape,
# where m and n are multiples of 128; 64x64 blocks, double-buffered, where they are multiples
# of 64 (the 320-channel layers). Staged, the time is least at fewer workgroups than straight
# from storage (80 blocks of 128x128; 320 of 64x64), and with k slices of at most MAX_K_SLICE.
# Operands straight from storage (bk 0) for the rest: one subgroup of 4x4 tiles (64x64) is
# fastest there and the time is least where the grid first reaches about 640 workgroups
# (bench/results/h200/wgsl_kernels/run1.json).
TILINGS = (((4, 4, 2, 2, 32, 1), 80), ((2, 2, 2, 2, 32, 2), 320),
           ((4, 4, 1, 1, 0, 1), 640), ((2, 4, 1, 1, 0, 1), 640), ((4, 2, 1, 1, 0, 1), 640),
           ((2, 2, 1, 1, 0, 1), 640), ((1, 2, 1, 1, 0, 1), 640), ((1, 1, 1, 1, 0, 1), 640))
# The UNet's largest im2col (960 channels at 64x64: 141 MB) is in; the VAE decoder's at 256x256
# and 512x512 (302 MB to 1.2 GB) stay on TVM's kernels. Read in place, a convolution needs no
# im2col, but the same bound holds: the VAE's would need float32 partial products of 128 MB and
# more, over the largest binding the variant needs today (docs/webgpu.md).
IM2COL_MAX_ELEMENTS = 128 << 20
MAX_K_SLICE = 2048        # a staged GEMM's k is split to slices no longer than this
MAX_SPLITS = 16
MIN_K_SLICE = 256
NAME = re.compile(r"smgemm_m(\d+)_n(\d+)_k(\d+)_b(\d+)_(t?)_s(\d+)_(\d+)x(\d+)x(\d+)x(\d+)"
                  r"(?:_bk(\d+)x(\d+))?(?:_conv((?:\d+x){9}\d+))?")


def plan(m: int, n: int, k: int, batch: int, b_transposed: bool,
         conv: tuple[int, ...] = ()) -> Gemm | None:
    """The Gemm for an m x k by k x n product over `batch`, or None when no tiling fits. Where
    B is a convolution's im2col (`conv`: its geometry), a staged kernel that reads the input in
    place if one fits, else one over the im2col."""
    if k % TILE:
        return None
    if conv and batch * k * n <= IM2COL_MAX_ELEMENTS:
        g = plan(m, n, k, batch, b_transposed)
        g = reading_in_place(g, conv) if g is not None and g.bk else None
        if g is not None:
            return g
    for (tm, tn, wm, wn, bk, stages), fill in TILINGS:
        g = Gemm(m, n, k, batch, 0, 0 if b_transposed else k * n * (batch > 1), b_transposed,
                 1, tm, tn, wm, wn, bk, stages)
        if not g.fits() or g.workgroup_bytes > WORKGROUP_STORAGE["subgroup-matrix"]:
            continue
        wgs = g.grid[0] * g.grid[1]
        step = max(bk, TILE)
        splits = 1
        while ((wgs * splits < fill or (bk and k // splits > MAX_K_SLICE))
               and splits < MAX_SPLITS and k % (2 * splits * step) == 0
               and k // (2 * splits) >= MIN_K_SLICE):
            splits *= 2
        return Gemm(**{**g.__dict__, "splits": splits})
    return None


def kernel_name(g: Gemm) -> str:
    staged = f"_bk{g.bk}x{g.stages}" if g.bk else ""
    conv = f"_conv{'x'.join(map(str, g.conv))}" if g.conv else ""
    return (f"smgemm_m{g.m}_n{g.n}_k{g.k}_b{g.batch}_{'t' if g.b_transposed else ''}_s{g.splits}"
            f"_{g.tm}x{g.tn}x{g.wm}x{g.wn}{staged}{conv}")


def gemm_from_name(name: str) -> Gemm | None:
    """The Gemm a kernel's name says (TVM appends `_kernel` to the device function)."""
    hit = NAME.search(name)
    if not hit:
        return None
    m, n, k, b, t, s, tm, tn, wm, wn, bk, stages, conv = hit.groups()
    m, n, k, b = int(m), int(n), int(k), int(b)
    geometry = tuple(int(x) for x in conv.split("x")) if conv else ()
    b_stride = b_batch_stride(k, n, b, bool(t), geometry)
    return Gemm(m, n, k, b, 0, b_stride, bool(t), int(s),
                int(tm), int(tn), int(wm), int(wn), int(bk or 0), int(stages or 1), geometry)


KERNELS = Kernels("websd.SubgroupMatrix", ("float16",), IM2COL_MAX_ELEMENTS,
                  lambda m, n, k, batch, b_transposed, dtype, conv=(): plan(m, n, k, batch,
                                                                            b_transposed, conv),
                  kernel_name)


def make(target):
    return make_pass(KERNELS)


def wgsl_body(name: str, source: str) -> str | None:
    """The GEMM shader for a kernel this pass made (None for any other kernel)."""
    from stages.passes.subgroup_matrix_gemm import DIRECTIVES, ENABLES, entry_point
    from stages.passes.wgsl_swap import rewrite

    g = gemm_from_name(name)
    if g is None:
        return None
    return rewrite(source, name, lambda fn, bufs: entry_point(g, fn, bufs["a"], bufs["b"], bufs["p"]),
                   ENABLES, DIRECTIVES, {"a": g.operand_type, "b": g.b_type})
