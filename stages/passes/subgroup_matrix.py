"""float16 convolutions and linear layers as GEMMs on the matrix units (the -sm variants).

Each R.nn.conv2d (NCHW/OIHW, one group) and each R.matmul of a 2-D weight, with float16
operands and a float32 result (what to_float16 leaves), becomes a call of one GEMM kernel:
  conv2d(x, w)       -> P = reshape(w, co x ci*kh*kw) @ im2col(x)  (a 1x1 conv reads x in place)
  matmul(x, w^T)     -> P = x @ w, w read in place as its transpose (torch's Linear)
then the k splits added up (elementwise, so it fuses with the op's bias and cast) and a reshape
to the op's shape. The kernel is a TIR
PrimFunc whose name says its Gemm (stages/passes/subgroup_matrix_gemm.py): its TIR body is a
plain loop, correct on any WebGPU adapter, and the build swaps in the WGSL subgroup-matrix body
when it packs the library (stages/passes/wgsl_swap.py). The im2col is a TE op that dlight schedules.
A linear layer whose rows are not a multiple of 16 (2 x 77 text tokens) gets zero rows added
and its result sliced back. GEMMs that fit no tiling even so (k not a multiple of 16: conv_in;
n not one of 16: 4-channel conv_out) stay as they were, and so do convolutions whose im2col
would exceed IM2COL_MAX_BYTES.

Runs after to_float16 and flash_attention, before transpose_matmul (which would fuse the
transposed weights away first).
"""

from __future__ import annotations

import re

from stages.engine.config import WORKGROUP_STORAGE
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
MAX_K_SLICE = 2048        # a staged GEMM's k is split to slices no longer than this
# A linear layer over a number of rows that fits no tiling (the text encoder's and the
# cross-attention's 2 x 77 tokens) gets zero rows up to a multiple of this, and its result
# sliced back: 154 -> 192 rows runs 25% more work on the matrix units, where the SIMT kernel
# took ~60 us per UNet K/V projection (bench/results/h200/session8/).
ROW_BLOCK = 64
# A convolution whose im2col would be larger stays on the SIMT kernels: the VAE decoder's at
# 256x256 and 512x512 (302 MB to 1.2 GB), the memory an image needs (the UNet's largest: 141 MB)
IM2COL_MAX_BYTES = 256 << 20
MAX_SPLITS = 16
MIN_K_SLICE = 256
NAME = re.compile(r"smgemm_m(\d+)_n(\d+)_k(\d+)_b(\d+)_(t?)_s(\d+)_(\d+)x(\d+)x(\d+)x(\d+)"
                  r"(?:_bk(\d+)x(\d+))?")


def plan(m: int, n: int, k: int, batch: int, b_transposed: bool) -> Gemm | None:
    """The Gemm for an m x k by k x n product over `batch`, or None when no tiling fits."""
    if k % TILE:
        return None
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
    return (f"smgemm_m{g.m}_n{g.n}_k{g.k}_b{g.batch}_{'t' if g.b_transposed else ''}_s{g.splits}"
            f"_{g.tm}x{g.tn}x{g.wm}x{g.wn}{staged}")


def gemm_from_name(name: str) -> Gemm | None:
    """The Gemm a kernel's name says (TVM appends `_kernel` to the device function)."""
    hit = NAME.search(name)
    if not hit:
        return None
    m, n, k, b, t, s, tm, tn, wm, wn, bk, stages = hit.groups()
    m, n, k, b = int(m), int(n), int(k), int(b)
    return Gemm(m, n, k, b, 0, 0 if t else k * n * (b > 1), bool(t), int(s),
                int(tm), int(tn), int(wm), int(wn), int(bk or 0), int(stages or 1))


def placeholder(g: Gemm):
    """The TIR kernel the WGSL body replaces: the same buffers, grid and workgroup, and a
    plain loop body (each invocation owns tile_m * tile_n / threads outputs) that computes the
    same P wherever the swap does not happen (a CPU adapter verifying the rewrite). B is flat:
    (batch, k, n), or (n, k) when transposed; element (z, kk, col) at z * bz + kk * bk + col * bc."""
    from tvm.script import tirx as T

    m, n, k, batch, splits, ks = g.m, g.n, g.k, g.batch, g.splits, g.k_slice
    gx, gy = g.n // g.tile_n, g.m // g.tile_m
    tile_m, tile_n, threads = g.tile_m, g.tile_n, g.threads
    per_thread = tile_m * tile_n // threads
    bz, bk, bc = (0, 1, k) if g.b_transposed else (k * n, n, 1)

    @T.prim_func(private=True, s_tir=True)
    def gemm(a: T.Buffer((m, k), "float16"), b: T.Buffer((batch * k * n,), "float16"),
             p: T.Buffer((splits, batch, m, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 4})
        for bx in T.thread_binding(gx, thread="blockIdx.x"):
            for by in T.thread_binding(gy * splits * batch, thread="blockIdx.y"):
                for tx in T.thread_binding(threads, thread="threadIdx.x"):
                    with T.sblock("gemm"):
                        T.reads()
                        T.writes()
                        acc = T.alloc_buffer((1,), "float32", scope="local")
                        for t in T.serial(per_thread):
                            acc[0] = T.float32(0)
                            for kk in T.serial(ks):
                                acc[0] = acc[0] + T.cast(
                                    a[by % gy * tile_m + (t * threads + tx) // tile_n,
                                      by // gy // batch * ks + kk], "float32") * T.cast(
                                    b[by // gy % batch * bz + (by // gy // batch * ks + kk) * bk
                                      + (bx * tile_n + (t * threads + tx) % tile_n) * bc],
                                    "float32")
                            p[by // gy // batch, by // gy % batch,
                              by % gy * tile_m + (t * threads + tx) // tile_n,
                              bx * tile_n + (t * threads + tx) % tile_n] = acc[0]

    import tvm

    return tvm.script.from_source(gemm.script())


def _im2col(x, kh: int, kw: int, strides, padding, ho: int, wo: int):
    """cols[b, (ci * kh + i) * kw + j, y * wo + x'] = x[b, ci, y*sh + i - pt, x'*sw + j - pl]
    (zero outside): a convolution's input as the right-hand operand of its GEMM."""
    from tvm import te, tirx

    bsz, ci, h, w = (int(d) for d in x.shape)
    sh, sw = strides
    pt, pl = padding

    def at(b, kk, pp):
        y = pp // wo * sh + kk % (kh * kw) // kw - pt
        xx = pp % wo * sw + kk % kw - pl
        inside = tirx.all(y >= 0, y < h, xx >= 0, xx < w)
        return tirx.if_then_else(
            inside, x[b, kk // (kh * kw), tirx.max(tirx.min(y, h - 1), 0),
                      tirx.max(tirx.min(xx, w - 1), 0)], tirx.const(0, x.dtype))

    return te.compute((bsz, ci * kh * kw, ho * wo), at, name="im2col")


def _add_splits(p):
    """out[b, i, j] = sum over s of p[s, b, i, j], written out: an elementwise op."""
    from tvm import te

    splits, *shape = (int(d) for d in p.shape)

    def at(*idx):
        total = p[(0, *idx)]
        for s in range(1, splits):
            total = total + p[(s, *idx)]
        return total

    return te.compute(tuple(shape), at, name="add_splits")


def make(target):
    import tvm
    from tvm import relax

    from stages.passes.rewrite import call_pass

    def fresh():
        kernels: dict[Gemm, tvm.ir.GlobalVar] = {}

        def gemm(m, g: Gemm, a, b):
            """Emit P = a @ b (float32 partials; b flat) and its splits added: (batch, m, n)."""
            if g not in kernels:
                name = kernel_name(g)
                kernels[g] = m.builder_.add_func(
                    placeholder(g).with_attr("global_symbol", name), name)
            p = m.builder_.emit(relax.call_tir(
                kernels[g], [a, m.builder_.emit(relax.op.reshape(b, (g.batch * g.k * g.n,)))],
                relax.TensorType((g.splits, g.batch, g.m, g.n), "float32")))
            # NOTE: the splits are added as an elementwise op, not a sum over the outer axis:
            # it fuses with what the op's result feeds (its bias, its cast) into one kernel,
            # where a reduction was a kernel of its own, and a slow one
            return m.builder_.emit_te(_add_splits, p, primfunc_name_hint="add_splits")

        def finish(m, call, out):
            out = m.builder_.emit(relax.op.reshape(out, [int(d) for d in call.ty.shape]))
            if call.ty.dtype != "float32":
                out = m.builder_.emit(relax.op.astype(out, call.ty.dtype))
            return out

        def conv2d(m, call):
            x, w = call.args
            at = call.attrs
            if (x.ty.dtype != "float16" or w.ty.dtype != "float16" or at.groups != 1
                    or at.data_layout != "NCHW" or at.kernel_layout != "OIHW"
                    or at.out_layout != "NCHW" or any(int(d) != 1 for d in at.dilation)):
                return None
            bsz, ci, _, _ = (int(d) for d in x.ty.shape)
            co, _, kh, kw = (int(d) for d in w.ty.shape)
            _, _, ho, wo = (int(d) for d in call.ty.shape)
            strides = [int(s) for s in at.strides]
            pad = [int(p) for p in at.padding]
            g = plan(co, ho * wo, ci * kh * kw, bsz, False)
            if g is None:
                return None
            in_place = kh == kw == 1 and strides == [1, 1] and not any(pad)
            if not in_place and bsz * g.k * g.n * 2 > IM2COL_MAX_BYTES:
                return None
            a = m.builder_.emit(relax.op.reshape(w, (co, ci * kh * kw)))
            if in_place:
                b = x
            else:
                b = m.builder_.emit_te(_im2col, x, kh, kw, strides, pad[:2], ho, wo,
                                       primfunc_name_hint="im2col")
            return finish(m, call, gemm(m, g, a, b))

        def matmul(m, call):
            x, y = call.args
            if x.ty.dtype != "float16" or y.ty.dtype != "float16" or y.ty.ndim != 2:
                return None
            xs = [int(d) for d in x.ty.shape]
            k, n = xs[-1], int(y.ty.shape[1])
            rows = 1
            for d in xs[:-1]:
                rows *= d
            source = m.lookup_binding(y) if isinstance(y, relax.Var) else None
            transposed = (isinstance(source, relax.Call) and isinstance(source.op, tvm.ir.Op)
                          and source.op.name == "relax.permute_dims"
                          and [int(a) for a in source.attrs.axes] == [1, 0])
            g = plan(rows, n, k, 1, transposed)
            padded = rows
            if g is None and rows % TILE:     # the 2 x 77 text tokens: zero rows added
                padded = -(-rows // ROW_BLOCK) * ROW_BLOCK
                g = plan(padded, n, k, 1, transposed)
            if g is None:
                return None
            a = m.builder_.emit(relax.op.reshape(x, (rows, k)))
            if padded != rows:
                a = m.builder_.emit(relax.op.nn.pad(a, [0, padded - rows, 0, 0]))
            out = gemm(m, g, a, source.args[0] if transposed else y)
            if padded != rows:
                out = m.builder_.emit(relax.op.strided_slice(out, [1], [0], [rows]))
            return finish(m, call, out)

        rules = {"relax.nn.conv2d": conv2d, "relax.matmul": matmul}

        def rewrite(m, call):
            rule = rules.get(call.op.name) if isinstance(call.op, tvm.ir.Op) else None
            return rule(m, call) if rule else None

        return rewrite

    return call_pass("websd.SubgroupMatrix", fresh)


def wgsl_bodies(name: str, source: str) -> str | None:
    """The subgroup-matrix shader for a kernel of this pass or of subgroup_matrix_attention
    (None for any other kernel): what stages/passes/wgsl_swap.py puts in a -sm library."""
    from stages.passes import subgroup_matrix_attention

    return wgsl_body(name, source) or subgroup_matrix_attention.wgsl_body(name, source)


def wgsl_body(name: str, source: str) -> str | None:
    """The GEMM shader for a kernel this pass made (None for any other kernel)."""
    from stages.passes.subgroup_matrix_gemm import DIRECTIVES, ENABLES, entry_point
    from stages.passes.wgsl_swap import rewrite

    g = gemm_from_name(name)
    if g is None:
        return None
    return rewrite(source, name, lambda fn, bufs: entry_point(g, fn, bufs["a"], bufs["b"], bufs["p"]),
                   ENABLES, DIRECTIVES, {"a": g.operand_type, "b": g.operand_type})
