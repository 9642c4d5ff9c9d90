"""Convolutions and linear layers as calls of one hand-written GEMM kernel: the graph rewrite
the GEMM passes share (stages/passes/subgroup_matrix.py for the matrix units, simt.py for every
adapter); each pass brings its kernels (`Kernels`).

Each R.nn.conv2d (NCHW/OIHW, one group, no dilation) and each R.matmul of a 2-D weight whose
operands are of a dtype the kernels take becomes a call of one GEMM kernel:
  conv2d(x, w)       -> P = reshape(w, co x ci*kh*kw) @ im2col(x)  (a 1x1 conv reads x in place)
  matmul(x, w^T)     -> P = x @ w, w read in place as its transpose (torch's Linear)
then the k splits added up (elementwise, so it fuses with the op's bias and cast) and a reshape
to the op's shape (a family that reads a convolution's input in place, an implicit im2col,
gets x itself). A family with `narrow_products` writes the P of an unsplit float16 op in
float16 itself, half the memory; the float16 variants' convolutions, typed float32 and then
cast, are made float16 ops first where such a GEMM takes them (`narrow_convolutions`). The
kernel is a TIR PrimFunc named after its GEMM (`Kernels.name`): its TIR body is a plain loop
(`placeholder`), correct on any adapter, and the build swaps in the WGSL body when it packs the
library (stages/passes/wgsl_swap.py). The im2col is a TE op that dlight
schedules. A linear layer over a number of rows that fits no tiling (2 x 77 text tokens) gets
zero rows up to a multiple of ROW_BLOCK and its result sliced back. GEMMs that fit no tiling even
so stay as they were, and so do convolutions whose im2col would be over the kernels' bound.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

# A linear layer over a number of rows that fits no tiling (the text encoder's and the
# cross-attention's 2 x 77 tokens) gets zero rows up to a multiple of this, and its result
# sliced back: 154 -> 192 rows runs 25% more work, where TVM's SIMT kernel took ~60 us per UNet
# K/V projection (bench/results/h200/session8/).
ROW_BLOCK = 64


@dataclass(frozen=True)
class Kernels:
    """A family of GEMM kernels as the rewrite uses it. A kernel spec (`plan`'s result) has m,
    n, k, batch, splits, k_slice, b_transposed, dtype (its operands'), tile_m, tile_n, threads,
    grid, conv and product_dtype (P's)."""
    pass_name: str
    dtypes: tuple[str, ...]                                   # operand dtypes it takes
    # A convolution whose im2col would have more elements stays on TVM's kernels: im2col is
    # the largest buffer these kernels add (docs/webgpu.md: the largest binding a variant needs)
    im2col_max_elements: int
    # (m, n, k, batch, b_transposed, dtype, conv) -> spec | None. conv: a convolution's
    # geometry (ci, h, w, kh, kw, sh, sw, pt, pl, wo) where B is its im2col, else (); a spec
    # whose `conv` is that geometry reads the input in place (no im2col)
    plan: Callable[..., object]
    name: Callable[[object], str]                             # spec -> kernel name
    # the spec has a product_dtype field: P in the op's dtype where k is not split and the
    # op's result is of its operands' dtype (the float32 sum would be cast to it right away)
    narrow_products: bool = False


def placeholder(g):
    """The TIR kernel the WGSL body replaces: the same buffers, grid and workgroup, and a
    plain loop body (each invocation owns tile_m * tile_n / threads outputs) that computes the
    same P wherever the swap does not happen (a CPU adapter verifying the rewrite). B is flat:
    (batch, k, n), or (n, k) when transposed; element (z, kk, col) at z * bz + kk * bk + col * bc."""
    from tvm.script import tirx as T

    from tvm import tirx

    m, n, k, batch, splits, ks = g.m, g.n, g.k, g.batch, g.splits, g.k_slice
    gx, gy = g.n // g.tile_n, g.m // g.tile_m
    tile_m, tile_n, threads = g.tile_m, g.tile_n, g.threads
    per_thread = tile_m * tile_n // threads
    bz, bk, bc = (0, 1, k) if g.b_transposed else (k * n, n, 1)
    dtype = g.dtype
    b_size = batch * k * n
    if g.conv:
        ci, h, w, kh, kw, sh, sw, pt, pl, wo = g.conv
        b_size = batch * ci * h * w

    def b_at(b, z, kk, col):
        """B[z][kk, col]: a matrix element, or a convolution's input at im2col's (kk, col)."""
        if not g.conv:
            return b[z * bz + kk * bk + col * bc]
        y = col // wo * sh + kk % (kh * kw) // kw - pt
        x = col % wo * sw + kk % kw - pl
        return tirx.if_then_else(
            tirx.all(y >= 0, y < h, x >= 0, x < w),
            b[((z * ci + kk // (kh * kw)) * h + tirx.max(tirx.min(y, h - 1), 0)) * w
              + tirx.max(tirx.min(x, w - 1), 0)], tirx.const(0, dtype))

    @T.prim_func(private=True, s_tir=True)
    def gemm(a: T.Buffer((m, k), dtype), b: T.Buffer((b_size,), dtype),
             p: T.Buffer((splits, batch, m, n), g.product_dtype)):
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
                                    b_at(b, by // gy % batch, by // gy // batch * ks + kk,
                                         bx * tile_n + (t * threads + tx) % tile_n),
                                    "float32")
                            p[by // gy // batch, by // gy % batch,
                              by % gy * tile_m + (t * threads + tx) // tile_n,
                              bx * tile_n + (t * threads + tx) % tile_n] = T.cast(
                                acc[0], g.product_dtype)

    import tvm

    return tvm.script.from_source(gemm.script())


def reading_in_place(g, conv: tuple[int, ...]):
    """Spec g (either family's, planned for B = the convolution's im2col) reading the input in
    place instead, or None where that does not fit. Its B is the image: batches ci * h * w apart."""
    g = replace(g, conv=tuple(conv), b_batch_stride=b_batch_stride(g.k, g.n, g.batch, False, conv))
    return g if g.fits() else None


def b_batch_stride(k: int, n: int, batch: int, b_transposed: bool, conv: tuple[int, ...]) -> int:
    """Elements between B's batches: an image (conv), an im2col (k x n), none (a shared weight)."""
    if batch == 1 or b_transposed and not conv:
        return 0
    return conv[0] * conv[1] * conv[2] if conv else k * n


def conv_origin(conv: tuple[int, ...], v: int, pieces: int, width: int) -> list[str]:
    """The WGSL that places a loader's load v (invocation-local bi{v}) for conv_gather: the row
    of the stage's k slice it copies (bkr{v}, of `pieces` loads of `width` pixels a row), its
    first output pixel (bp{v}) and that pixel's top-left tap (by{v}, bx{v})."""
    ci, h, w, kh, kw, sh, sw, pt, pl, wo = conv
    return [f"  let bkr{v} = bi{v} / {pieces}u;",
            f"  let bp{v} = nb + (bi{v} % {pieces}u) * {width}u;",
            f"  let by{v} = i32((bp{v} / {wo}u) * {sh}u) - {pt};",
            f"  let bx{v} = i32((bp{v} % {wo}u) * {sw}u) - {pl};"]


def conv_gather(conv: tuple[int, ...], b: str, v: int, kk: str, count: int, zero: str,
                cast: str) -> tuple[list[str], list[str]]:
    """The WGSL a GEMM kernel's loader reads B with where B is a convolution's input read in
    place (the same index math as placeholder's b_at): `count` values of im2col's row `kk` (a
    WGSL u32 expression) at consecutive output pixels of one row, whose first one's top-left tap
    the loader holds in by{v} and bx{v} (i32), of the image at b0. Returns the lines, which
    open a block for the caller to close, and the values (`cast` applied, `zero` outside x: an
    index outside x is clamped, never read out of bounds)."""
    ci, h, w, kh, kw, sh, sw, pt, pl, wo = conv
    lines = [f"    {{ let kk = {kk};",
             f"      let r = kk % {kh * kw}u;",
             f"      let iy = by{v} + i32(r / {kw}u);",
             f"      let ix = bx{v} + i32(r % {kw}u);",
             f"      let row = b0 + (kk / {kh * kw}u) * {h * w}u + u32(clamp(iy, 0, {h - 1})) * {w}u;",
             f"      let yin = iy >= 0 && iy < {h};"]
    values = []
    for c in range(count):
        x = f"ix + {c * sw}" if c else "ix"
        values.append(f"select({zero}, {cast}({b}[row + u32(clamp({x}, 0, {w - 1}))]), "
                      f"yin && {x} >= 0 && {x} < {w})")
    return lines, values


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


def make_pass(kernels: Kernels):
    """The module pass that rewrites every convolution and linear layer `kernels` can take."""
    import tvm
    from tvm import relax

    from stages.passes.rewrite import call_pass

    def fresh():
        added: dict[object, tvm.ir.GlobalVar] = {}

        def gemm(m, g, a, b, out_dtype):
            """Emit P = a @ b (partials in g.product_dtype; b flat) and its splits added:
            (batch, m, n)."""
            if kernels.narrow_products and g.splits == 1 and out_dtype == g.dtype != "float32":
                g = replace(g, product_dtype=out_dtype)
            if g not in added:
                name = kernels.name(g)
                added[g] = m.builder_.add_func(
                    placeholder(g).with_attr("global_symbol", name), name)
            flat = 1
            for d in b.ty.shape:
                flat *= int(d)
            p = m.builder_.emit(relax.call_tir(
                added[g], [a, m.builder_.emit(relax.op.reshape(b, (flat,)))],
                relax.TensorType((g.splits, g.batch, g.m, g.n), g.product_dtype)))
            # NOTE: the splits are added as an elementwise op, not a sum over the outer axis:
            # it fuses with what the op's result feeds (its bias, its cast) into one kernel,
            # where a reduction was a kernel of its own, and a slow one
            return m.builder_.emit_te(_add_splits, p, primfunc_name_hint="add_splits")

        def finish(m, call, out):
            out = m.builder_.emit(relax.op.reshape(out, [int(d) for d in call.ty.shape]))
            if call.ty.dtype != out.ty.dtype:
                out = m.builder_.emit(relax.op.astype(out, call.ty.dtype))
            return out

        def conv2d(m, call):
            planned = conv_plan(kernels, call)
            if planned is None:
                return None
            g, in_place = planned
            x, w = call.args
            co, ci, kh, kw = (int(d) for d in w.ty.shape)
            _, _, ho, wo = (int(d) for d in call.ty.shape)
            strides = [int(s) for s in call.attrs.strides]
            pad = [int(p) for p in call.attrs.padding]
            a = m.builder_.emit(relax.op.reshape(w, (co, ci * kh * kw)))
            if in_place or g.conv:
                b = x
            else:
                b = m.builder_.emit_te(_im2col, x, kh, kw, strides, pad[:2], ho, wo,
                                       primfunc_name_hint="im2col")
            return finish(m, call, gemm(m, g, a, b, str(call.ty.dtype)))

        def matmul(m, call):
            x, y = call.args
            dtype = operand_dtype(kernels, x, y)
            if dtype is None or y.ty.ndim != 2:
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
            g = kernels.plan(rows, n, k, 1, transposed, dtype)
            padded = rows
            if g is None and rows % ROW_BLOCK:     # the 2 x 77 text tokens: zero rows added
                padded = -(-rows // ROW_BLOCK) * ROW_BLOCK
                g = kernels.plan(padded, n, k, 1, transposed, dtype)
            if g is None:
                return None
            a = m.builder_.emit(relax.op.reshape(x, (rows, k)))
            if padded != rows:
                a = m.builder_.emit(relax.op.nn.pad(a, [0, padded - rows, 0, 0]))
            out = gemm(m, g, a, source.args[0] if transposed else y, str(call.ty.dtype))
            if padded != rows:
                out = m.builder_.emit(relax.op.strided_slice(out, [1], [0], [rows]))
            return finish(m, call, out)

        rules = {"relax.nn.conv2d": conv2d, "relax.matmul": matmul}

        def rewrite(m, call):
            rule = rules.get(call.op.name) if isinstance(call.op, tvm.ir.Op) else None
            return rule(m, call) if rule else None

        return rewrite

    rewrite = call_pass(kernels.pass_name, fresh)
    if not kernels.narrow_products:
        return rewrite
    return tvm.transform.Sequential([narrow_convolutions(kernels), rewrite])


def operand_dtype(kernels: Kernels, x, w) -> str | None:
    dtype = str(x.ty.dtype)
    return dtype if dtype == str(w.ty.dtype) and dtype in kernels.dtypes else None


def conv_plan(kernels: Kernels, call):
    """(spec, whether B is x itself: a 1x1 convolution) for an R.nn.conv2d `kernels` take, else
    None."""
    x, w = call.args
    at = call.attrs
    dtype = operand_dtype(kernels, x, w)
    if (dtype is None or at.groups != 1
            or at.data_layout != "NCHW" or at.kernel_layout != "OIHW"
            or at.out_layout != "NCHW" or any(int(d) != 1 for d in at.dilation)):
        return None
    bsz, ci, h, w_ = (int(d) for d in x.ty.shape)
    co, _, kh, kw = (int(d) for d in w.ty.shape)
    _, _, ho, wo = (int(d) for d in call.ty.shape)
    strides = [int(s) for s in at.strides]
    pad = [int(p) for p in at.padding]
    in_place = kh == kw == 1 and strides == [1, 1] and not any(pad)
    geometry = () if in_place else (ci, h, w_, kh, kw, *strides, *pad[:2], wo)
    g = kernels.plan(co, ho * wo, ci * kh * kw, bsz, False, dtype, geometry)
    if g is None or (not in_place and not g.conv
                     and bsz * g.k * g.n > kernels.im2col_max_elements):
        return None
    return g, in_place


def narrow_convolutions(kernels: Kernels):
    """astype(conv2d(x, w) -> float32, float16) -> conv2d(x, w) -> float16 where x and w are
    float16 and the convolution goes to an unsplit GEMM of `kernels`: the GEMM then writes its
    products in float16 (narrow_products), as the cast would have made them, and the float32
    ones are never stored. (The float16 variants' graph has this form: to_float16's mixed
    precision types a convolution float32 and casts its result.) A convolution left to TVM's
    kernels keeps its float32 accumulation."""
    from tvm import relax
    from tvm.relax.dpl import is_op, wildcard

    from stages.passes.rewrite import pattern_pass

    conv = is_op("relax.nn.conv2d")(wildcard(), wildcard())

    def rewrite(expr, matches):
        c = matches[conv]
        if str(expr.attrs.dtype) != "float16" or str(c.ty.dtype) != "float32":
            return expr
        planned = conv_plan(kernels, c)
        if planned is None or planned[0].splits != 1 or planned[0].dtype != "float16":
            return expr
        at = c.attrs
        return relax.op.nn.conv2d(*c.args, strides=at.strides, padding=at.padding,
                                  dilation=at.dilation, groups=at.groups,
                                  data_layout=at.data_layout, kernel_layout=at.kernel_layout,
                                  out_layout=at.out_layout, out_dtype="float16")

    return pattern_pass(kernels.pass_name + ".NarrowConvolutions",
                        (is_op("relax.astype")(conv), rewrite))
