"""Convolutions and linear layers as GEMMs on the SIMT kernel, in every webgpu variant.

Each R.nn.conv2d and each R.matmul of a 2-D weight with float32 or float16 operands becomes a
call of the SIMT GEMM (stages/passes/simt_gemm.py: register tiles, operands staged through
workgroup memory, within WebGPU's guaranteed limits), through the rewrite the GEMM passes share
(stages/passes/gemm_rewrite.py). In a -sm variant it takes what the matrix units' pass
(subgroup_matrix.py, which runs first) left. A convolution's GEMM reads its input in place
(an implicit im2col) where its output rows are a multiple of 4 wide. GEMMs that fit no tiling (k not a multiple of 8:
conv_in's 4 x 9; m not one of 32: the 4-channel conv_out) stay on TVM's kernels.

Runs after to_float16 and flash_attention, before transpose_matmul.
"""

from __future__ import annotations

import re

from stages.passes.gemm_rewrite import Kernels, b_batch_stride, make_pass, reading_in_place
from stages.passes.simt_gemm import DTYPE_OF, ENABLES, WGSL_TYPE, SimtGemm, entry_point

# Tilings (bm, bn, tm, tn, bk) in order of preference. Measured on the H200 on the UNet's
# convolutions (bench/results/h200/wgsl_kernels/run6_simt/, float32 and float16 alike): 8x8
# values an invocation in blocks of 128x128, else 64x128 or 128x64, ran 37-40 TFLOP/s once k
# was split to about 1280 workgroups (TVM's kernels: 3-8); the 64x64 and 32x64 blocks trail
# by 10-55%, and unsplit grids of a few hundred workgroups run at half speed or less.
TILINGS = ((128, 128, 8, 8, 8), (64, 128, 8, 8, 8), (128, 64, 8, 8, 8), (64, 64, 8, 8, 8),
           (64, 64, 4, 4, 16), (32, 64, 4, 4, 16))
FILL = 1280               # workgroups a GEMM's k is split for
# Where k cannot be split that far, a smaller block with at least this many workgroups beats a
# 128x128 one with fewer (the linear layers' shapes, wgsl_kernels/run8_simt_linear/: 512x1280
# by 1280 x 1280 0.075 -> 0.061 ms on 64x128 blocks, 2048 x 640 by 640 x 640 the same); among
# the first LARGE_BLOCKS tilings, else the first that fits
MIN_GRID = 320
LARGE_BLOCKS = 3
MAX_SPLITS = 16
MIN_K_SLICE = 256
# The float32 partial products of all splits are one buffer: splits stop short of this
MAX_PARTIAL_BYTES = 64 << 20
# ... and a GEMM whose unsplit partial products are larger than the largest binding its
# variant needs anyway stays on TVM's kernels: float16, WebGPU's default 128 MiB; float32, the
# 256 MiB of the VAE decoder's 256-channel activation at 512x512. That layer's float32 products
# (256 MiB) would otherwise have made the float16 variant ask adapters for 256 MiB bindings.
MAX_PRODUCT_BYTES = {"float16": 128 << 20, "float32": 256 << 20}
NAME = re.compile(r"simtgemm_(f32|f16)_m(\d+)_n(\d+)_k(\d+)_b(\d+)_(t?)_s(\d+)_(\d+)x(\d+)x(\d+)x(\d+)x(\d+)"
                  r"(?:_conv((?:\d+x){9}\d+))?(?:_p(f16))?")


def plan(m: int, n: int, k: int, batch: int, b_transposed: bool, dtype: str = "float32",
         conv: tuple[int, ...] = ()) -> SimtGemm | None:
    """The SimtGemm for an m x k by k x n product over `batch`, or None when no tiling fits.
    Where B is a convolution's im2col (`conv`: its geometry), a kernel that reads the input in
    place if one fits, else one over the im2col."""
    if 4 * batch * m * n > MAX_PRODUCT_BYTES[dtype]:
        return None
    if conv:
        g = plan(m, n, k, batch, b_transposed, dtype)
        g = reading_in_place(g, conv) if g is not None else None
        if g is not None:
            return g
    planned = []
    for i, (bm, bn, tm, tn, bk) in enumerate(TILINGS):
        g = SimtGemm(m, n, k, batch, 0, 0 if b_transposed else k * n * (batch > 1), b_transposed,
                     1, dtype, bm, bn, tm, tn, bk)
        if g.fits():
            planned.append((i, split_k(g)))
    for i, g in planned:
        if i < LARGE_BLOCKS and g.grid[0] * g.grid[1] >= MIN_GRID:
            return g
    return planned[0][1] if planned else None


def split_k(g: SimtGemm) -> SimtGemm:
    """g with k split until the grid has about FILL workgroups (within the slice and partial
    product bounds)."""
    wgs, splits = g.grid[0] * g.grid[1], 1
    while (wgs * splits < FILL and splits < MAX_SPLITS and g.k % (2 * splits * g.bk) == 0
           and g.k // (2 * splits) >= MIN_K_SLICE
           and 2 * splits * g.batch * g.m * g.n * 4 <= MAX_PARTIAL_BYTES):
        splits *= 2
    return SimtGemm(**{**g.__dict__, "splits": splits})


def kernel_name(g: SimtGemm) -> str:
    conv = f"_conv{'x'.join(map(str, g.conv))}" if g.conv else ""
    product = f"_p{WGSL_TYPE[g.product_dtype]}" if g.product_dtype != "float32" else ""
    return (f"simtgemm_{WGSL_TYPE[g.dtype]}_m{g.m}_n{g.n}_k{g.k}_b{g.batch}_"
            f"{'t' if g.b_transposed else ''}_s{g.splits}_{g.bm}x{g.bn}x{g.tm}x{g.tn}x{g.bk}{conv}"
            f"{product}")


def gemm_from_name(name: str) -> SimtGemm | None:
    """The SimtGemm a kernel's name says (TVM appends `_kernel` to the device function)."""
    hit = NAME.search(name)
    if not hit:
        return None
    dtype, m, n, k, b, t, s, bm, bn, tm, tn, bk, conv, product = hit.groups()
    m, n, k, b = int(m), int(n), int(k), int(b)
    geometry = tuple(int(x) for x in conv.split("x")) if conv else ()
    b_stride = b_batch_stride(k, n, b, bool(t), geometry)
    return SimtGemm(m, n, k, b, 0, b_stride, bool(t), int(s),
                    DTYPE_OF[dtype],
                    int(bm), int(bn), int(tm), int(tn), int(bk), geometry,
                    DTYPE_OF[product] if product else "float32")


# 128 MiB of float16: the plain float16 variant stays within WebGPU's guaranteed binding size
# (the 960-channel convolution at 64x64 latents, 141 MB, stays on TVM's kernel); 256 MiB of
# float32, which that variant's largest activation needs anyway (docs/webgpu.md)
IM2COL_MAX_ELEMENTS = 64 << 20
KERNELS = Kernels("websd.SimtGemm", ("float32", "float16"), IM2COL_MAX_ELEMENTS, plan,
                  kernel_name, narrow_products=True)


def make(target):
    return make_pass(KERNELS)


def wgsl_body(name: str, source: str) -> str | None:
    """The GEMM shader for a kernel this pass made (None for any other kernel)."""
    from stages.passes.wgsl_swap import rewrite

    g = gemm_from_name(name)
    if g is None:
        return None
    return rewrite(source, name, lambda fn, bufs: entry_point(g, fn, bufs["a"], bufs["b"], bufs["p"]),
                   ENABLES[g.dtype], (),
                   {"a": g.a_type, "b": g.b_type, "p": g.p_type})
