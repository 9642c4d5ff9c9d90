"""The GEMM passes' halves that can run here: the graph rewrite (convolutions and linear layers
as GEMMs over im2col and split k) computes what the ops computed; the packed library carries our
WGSL in place of TVM's; the SIMT GEMM's WGSL computes its product under Dawn here, and the
subgroup-matrix kernels' with their matrix ops written out (their own speed and numbers need a
GPU with subgroup matrices: bench/gpu/run_on_device.sh checks them against PyTorch float64)."""

import re
import struct

import numpy as np
import pytest

WEBGPU = {"kind": "webgpu", "max_num_threads": 256, "max_shared_memory_per_block": 16384,
          "host": {"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm"}}


def _cpu_gemm(g):
    """A CPU PrimFunc with the GEMM kernel's signature and meaning (P = A @ B per k split, in
    g.product_dtype; B flat, as gemm_rewrite.placeholder takes it: a matrix, or a convolution's
    input)."""
    from tvm import te, tirx

    a = te.placeholder((g.m, g.k), g.dtype, name="a")
    r = te.reduce_axis((0, g.k_slice), name="r")
    if g.conv:
        ci, h, w, kh, kw, sh, sw, pt, pl, wo = g.conv
        b = te.placeholder((g.batch * ci * h * w,), g.dtype, name="b")

        def b_at(z, kk, j):
            y = j // wo * sh + kk % (kh * kw) // kw - pt
            x = j % wo * sw + kk % kw - pl
            inside = tirx.all(y >= 0, y < h, x >= 0, x < w)
            at = ((z * ci + kk // (kh * kw)) * h + tirx.max(tirx.min(y, h - 1), 0)) * w + \
                tirx.max(tirx.min(x, w - 1), 0)
            return tirx.if_then_else(inside, b[at], tirx.const(0, g.dtype))
    else:
        b = te.placeholder((g.batch * g.k * g.n,), g.dtype, name="b")
        bz, bk, bc = (0, 1, g.k) if g.b_transposed else (g.k * g.n, g.n, 1)

        def b_at(z, kk, j):
            return b[z * bz + kk * bk + j * bc]

    def at(s, z, i, j):
        kk = s * g.k_slice + r
        return te.sum(a[i, kk].astype("float32") * b_at(z, kk, j).astype("float32"), axis=r)

    p = te.compute((g.splits, g.batch, g.m, g.n), at, name="p")
    if g.product_dtype != "float32":   # an unsplit float16 GEMM writing float16 products
        p = te.compute(p.shape, lambda *i: p(*i).astype(g.product_dtype), name="p_cast")
    return te.create_prim_func([a, b, p])


def _model(dtype="float16"):
    from tvm import relax

    bb = relax.BlockBuilder()
    shapes = {"x": (2, 32, 8, 8), "w3": (64, 32, 3, 3), "w1": (32, 32, 1, 1),
              "ws": (32, 32, 3, 3), "wk": (64, 1152, 1, 1), "xk": (2, 1152, 8, 8),
              "xl": (2, 64, 48), "wl": (128, 48), "xt": (2, 77, 48)}
    args = {n: relax.Var(n, relax.TensorType(s, dtype)) for n, s in shapes.items()}
    conv = relax.op.nn.conv2d
    with bb.function("main", list(args.values())):
        with bb.dataflow():
            a = args
            outs = [
                bb.emit(conv(a["x"], a["w3"], padding=1, out_dtype="float32")),
                bb.emit(conv(a["x"], a["w1"], out_dtype="float32")),
                bb.emit(conv(a["x"], a["ws"], strides=2, padding=1, out_dtype="float32")),
                bb.emit(conv(a["xk"], a["wk"], out_dtype="float32")),   # k 1152: split
            ]
            wt = bb.emit(relax.op.permute_dims(a["wl"], [1, 0]))
            outs.append(bb.emit(relax.op.matmul(a["xl"], wt, out_dtype="float32")))
            # 2 x 77 text tokens: zero rows up to 192, the result sliced back
            outs.append(bb.emit(relax.op.matmul(a["xt"], wt, out_dtype="float32")))
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    return bb.get(), shapes


def _run_cpu(mod, inputs):
    import tvm
    from tvm import relax

    ex = relax.build(mod, tvm.target.Target("llvm"))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    outs = vm["main"](*[tvm.runtime.tensor(v) for v in inputs])
    return [o.numpy() for o in outs]


def _check_rewrite(rewritten, mod, shapes, gemms, dtype):
    """The rewritten module, its GEMM kernels as CPU PrimFuncs of the same meaning (the rest of
    the rewritten graph: im2col, reshapes, the sums over k splits, runs as it is), computes what
    the module computed."""
    text = rewritten["main"].script()
    assert "R.matmul" not in text
    for gv in list(rewritten.functions):
        if gv.name_hint in gemms:
            rewritten[gv] = _cpu_gemm(gemms[gv.name_hint]).with_attr("global_symbol",
                                                                      gv.name_hint)
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(-1, 1, s).astype(dtype) for s in shapes.values()]
    for got, want in zip(_run_cpu(rewritten, inputs), _run_cpu(mod, inputs)):
        assert got.shape == want.shape and got.dtype == want.dtype
        # float16 results: float32 sums in another order round to float16 a unit apart here
        # and there (2^-11 relative)
        bound = 1e-3 if got.dtype == np.float16 else 1e-5
        got, want = got.astype(np.float64), want.astype(np.float64)
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < bound


def test_the_rewrite_computes_what_the_ops_computed():
    import tvm

    from stages.passes import subgroup_matrix

    mod, shapes = _model()
    rewritten = subgroup_matrix.make(tvm.target.Target(WEBGPU))(mod)
    gemms = {gv.name_hint: subgroup_matrix.gemm_from_name(gv.name_hint)
             for gv in rewritten.functions if gv.name_hint.startswith("smgemm_")}
    assert len(gemms) == 6 and any(g.splits > 1 for g in gemms.values()), gemms
    assert any(g.m == 192 for g in gemms.values()), gemms
    assert any(g.b_transposed for g in gemms.values())
    assert "R.nn.conv2d" not in rewritten["main"].script()
    _check_rewrite(rewritten, mod, shapes, gemms, "float16")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_simt_rewrite_computes_what_the_ops_computed(dtype):
    """Every convolution and linear layer with a tiling goes to the SIMT GEMM, in float32 and in
    float16; the stride-2 convolution's 16 outputs fit none (blocks of 64 columns) and stay."""
    import tvm

    from stages.passes import simt

    mod, shapes = _model(dtype)
    rewritten = simt.make(tvm.target.Target(WEBGPU))(mod)
    gemms = {gv.name_hint: simt.gemm_from_name(gv.name_hint)
             for gv in rewritten.functions if gv.name_hint.startswith("simtgemm_")}
    assert len(gemms) == 5, gemms
    assert {g.dtype for g in gemms.values()} == {dtype}
    assert any(g.splits > 1 for g in gemms.values()) and any(g.b_transposed for g in gemms.values())
    assert any(g.m == 192 for g in gemms.values()), gemms
    # the 3x3 convolution reads its input in place; the 8x8 output rows are 4-aligned
    assert [g.conv for g in gemms.values() if g.conv] == [(32, 8, 8, 3, 3, 1, 1, 1, 1, 8)]
    assert rewritten["main"].script().count("R.nn.conv2d") == 1
    assert "im2col" not in rewritten["main"].script()
    _check_rewrite(rewritten, mod, shapes, gemms, dtype)


def test_a_float16_convolution_cast_to_float16_writes_float16_products():
    """The float16 variants' form, conv2d -> float32 then astype(float16): an unsplit SIMT GEMM
    writes its products in float16 (no float32 buffer), a split one stays float32 and casts, and
    the results are the same values as the graph's."""
    import tvm
    from tvm import relax

    from stages.passes import simt

    bb = relax.BlockBuilder()
    shapes = {"x": (2, 32, 8, 8), "w3": (64, 32, 3, 3), "wk": (64, 1152, 1, 1),
              "xk": (2, 1152, 8, 8)}
    args = {n: relax.Var(n, relax.TensorType(s, "float16")) for n, s in shapes.items()}
    with bb.function("main", list(args.values())):
        with bb.dataflow():
            a = args
            wide = bb.emit(relax.op.nn.conv2d(a["x"], a["w3"], padding=1, out_dtype="float32"))
            split = bb.emit(relax.op.nn.conv2d(a["xk"], a["wk"], out_dtype="float32"))
            outs = [bb.emit(relax.op.astype(wide, "float16")),
                    bb.emit(relax.op.astype(split, "float16"))]
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    mod = bb.get()
    rewritten = simt.make(tvm.target.Target(WEBGPU))(mod)
    gemms = {gv.name_hint: simt.gemm_from_name(gv.name_hint)
             for gv in rewritten.functions if gv.name_hint.startswith("simtgemm_")}
    assert sorted((g.splits, g.product_dtype) for g in gemms.values()) == [
        (1, "float16"), (4, "float32")], gemms
    assert all(n.endswith("_pf16") == (g.product_dtype == "float16") for n, g in gemms.items())
    _check_rewrite(rewritten, mod, shapes, gemms, "float16")


def test_a_gemm_that_fits_no_tiling_is_left_alone():
    from stages.passes.subgroup_matrix import plan

    assert plan(154, 32, 32, 1, True) is None      # 2 x 77 tokens (the rewrite pads them)
    assert plan(320, 64, 36, 2, False) is None     # conv_in: k = 4 * 9
    assert plan(4, 4096, 2880, 2, False) is None   # conv_out: 4 channels


def test_a_gemm_whose_products_would_need_a_larger_binding_stays():
    """The VAE decoder's 256-channel convolution at 512x512: float32 products of 256 MiB. In
    float16 that would be twice the largest binding the variant needs (WebGPU's default 128 MiB),
    so it stays on TVM's kernel; float32 needs 256 MiB bindings anyway and takes it."""
    from stages.passes import simt

    geometry = (256, 512, 512, 3, 3, 1, 1, 1, 1, 512)
    assert simt.plan(256, 512 * 512, 2304, 1, False, "float16", geometry) is None
    assert simt.plan(256, 512 * 512, 2304, 1, False, "float32", geometry).conv == geometry
    assert simt.plan(128, 512 * 512, 2304, 1, False, "float16", geometry).conv == geometry


def test_a_convolution_whose_im2col_is_too_large_stays_simt():
    """SD's VAE decoder at 512x512: 256 -> 128 channels, a 1.2 GB im2col."""
    import tvm
    from tvm import relax

    from stages.passes import subgroup_matrix

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 256, 512, 512), "float16"))
    w = relax.Var("w", relax.TensorType((128, 256, 3, 3), "float16"))
    w1 = relax.Var("w1", relax.TensorType((128, 256, 1, 1), "float16"))
    with bb.function("main", [x, w, w1]):
        with bb.dataflow():
            big = bb.emit(relax.op.nn.conv2d(x, w, padding=1, out_dtype="float32"))
            in_place = bb.emit(relax.op.nn.conv2d(x, w1, out_dtype="float32"))   # no im2col
            out = bb.emit_output(relax.Tuple([big, in_place]))
        bb.emit_func_output(out)
    mod = subgroup_matrix.make(tvm.target.Target(WEBGPU))(bb.get())
    assert mod["main"].script().count("R.nn.conv2d") == 1
    assert sum(gv.name_hint.startswith("smgemm_") for gv in mod.functions) == 1


def test_the_packed_library_carries_our_wgsl():
    import tvm
    import tvm_ffi
    from tvm.script import tirx as T

    from stages.passes import subgroup_matrix_attention as sma
    from stages.compile import wgsl_bodies
    from stages.passes.attention_rewrite import placeholder as attention_placeholder
    from stages.passes import simt
    from stages.passes.gemm_rewrite import placeholder
    from stages.passes.subgroup_matrix import kernel_name, plan
    from stages.passes.wgsl_swap import MODULE_KEY, shaders, swap

    @T.prim_func(s_tir=True)
    def other(x: T.Buffer((64,), "float32"), y: T.Buffer((64,), "float32")):
        T.func_attr({"global_symbol": "other", "tirx.noalias": True})
        for tx in T.thread_binding(64, "threadIdx.x"):
            with T.sblock("b"):
                y[tx] = x[tx] * T.float32(2)

    funcs = {"other": other}
    # straight from storage, and staged through workgroup memory (its operands bound as vec4<u32>)
    for args in [(32, 64, 288, 2, False), (128, 32, 32, 1, True), (128, 128, 64, 1, True)]:
        g = plan(*args)
        funcs[kernel_name(g)] = placeholder(g).with_attr("global_symbol", kernel_name(g))
    # the SIMT GEMM, float32 and float16
    simt_names = []
    for dtype in ("float32", "float16"):
        g = simt.plan(128, 128, 64, 2, False, dtype)
        simt_names.append(simt.kernel_name(g) + "_kernel")
        funcs[simt.kernel_name(g)] = placeholder(g).with_attr("global_symbol", simt.kernel_name(g))
    attention = sma.plan(2, 512, 512, 8, 40, 40 ** -0.5, "float16")
    funcs[sma.kernel_name(attention)] = attention_placeholder(attention, "float16", True).with_attr(
        "global_symbol", sma.kernel_name(attention))
    lib = tvm.tirx.build(tvm.IRModule(funcs), target=tvm.target.Target(WEBGPU))
    blob = bytes(tvm_ffi.get_global_func("runtime.ModulePackImportsToTensor")(lib).numpy())
    new, done = swap(blob, wgsl_bodies)
    assert done == sorted(n + "_kernel" for n in funcs if n != "other")
    # the byte counts that enclose the module still add up, and every shader reads back
    assert struct.unpack_from("<Q", new)[0] == len(new) - 8
    at = new.find(MODULE_KEY) + len(MODULE_KEY)
    module = new[at + 8:at + 8 + struct.unpack_from("<Q", new, at)[0]]
    assert at + 8 + len(module) <= len(new)
    before = shaders(blob[blob.find(MODULE_KEY):])
    after = {n: module[s:s + length].decode() for n, (s, length) in shaders(module).items()}
    assert set(after) == set(before) == {n + "_kernel" for n in funcs}
    assert "subgroupMatrix" not in after["other_kernel"]
    for name in done:
        text = after[name]
        assert text.startswith("//") and text.count("@compute") == 1 and f"fn {name}(" in text
        assert "var<uniform> podArgs" in text
        if name in simt_names:
            assert "subgroup" not in text and "var<workgroup> sa : array<vec4<f32>" in text
            assert re.search(r"var<storage, read_write> p_ptr : array<vec4<f32>>;", text)
            assert ("enable f16;" in text) == ("_f16_" in name)
        else:
            assert "enable chromium_experimental_subgroup_matrix;" in text
            assert "subgroupMatrixMultiplyAccumulate" in text
    staged = after[kernel_name(plan(128, 128, 64, 1, True)) + "_kernel"]
    assert "var<workgroup> sa" in staged and "workgroupBarrier();" in staged
    assert re.search(r"var<storage, read> a_ptr : array<vec4<u32>>;", staged), staged[:600]
    assert re.search(r"var<storage, read_write> p_ptr : array<f32>;", staged)
    # TVM binds the buffers it keeps in its own order: the kernels name them, not count them
    attn = after[sma.kernel_name(attention) + "_kernel"]
    assert "&q_ptr" in attn and "k_ptr[" in attn and "v_ptr[" in attn and "out_ptr[" in attn
    assert "bias" not in attn
    # K and V are staged 8 bytes a load: rebound as vec4<f16>
    assert re.search(r"var<storage, read> k_ptr : array<vec4<f16>>;", attn)
    # TVM's own packing of the swapped bytes is what emit links
    obj = tvm_ffi.get_global_func("codegen.codegen_blob")(
        new, False, '{"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm"}', "")
    assert obj.kind == "llvm"


def test_a_library_laid_out_otherwise_is_refused():
    from stages.passes.wgsl_swap import SwapError, swap

    with pytest.raises(SwapError):
        swap(struct.pack("<Q", 3) + b"abc", lambda name, source: None)


def test_attention_goes_to_the_matrix_units_and_the_rest_stays():
    """-sm variants: self-attention at head_dim 40, 80 and 160, long and short, and the 77-key
    cross-attention go to the matrix units; a causal one stays for the TIR kernel."""
    import tvm
    from tvm import relax

    from stages.passes import subgroup_matrix_attention as sma

    bb = relax.BlockBuilder()
    q = relax.Var("q", relax.TensorType((2, 512, 8, 80), "float16"))
    k = relax.Var("k", relax.TensorType((2, 77, 8, 80), "float16"))
    short = relax.Var("short", relax.TensorType((2, 64, 8, 80), "float16"))
    narrow = relax.Var("narrow", relax.TensorType((2, 512, 8, 40), "float16"))
    wide = relax.Var("wide", relax.TensorType((2, 64, 8, 160), "float16"))
    wide_k = relax.Var("wide_k", relax.TensorType((2, 77, 8, 160), "float16"))
    with bb.function("main", [q, k, short, narrow, wide, wide_k]):
        with bb.dataflow():
            outs = [bb.emit(relax.op.nn.attention(q, q, q)),             # self: taken
                    bb.emit(relax.op.nn.attention(q, k, k)),             # 77 keys
                    bb.emit(relax.op.nn.attention(q, q, q, causal_mask="TopLeft")),
                    bb.emit(relax.op.nn.attention(short, short, short)),  # 64 keys
                    bb.emit(relax.op.nn.attention(narrow, narrow, narrow)),
                    bb.emit(relax.op.nn.attention(wide, wide, wide)),
                    bb.emit(relax.op.nn.attention(wide, wide_k, wide_k))]
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    mod = sma.make(tvm.target.Target(WEBGPU))(bb.get())
    names = [gv.name_hint for gv in mod.functions if gv.name_hint.startswith("smattn_")]
    kernels = sorted((a.queries, a.keys, a.head_dim) for a in map(sma.attention_from_name, names))
    assert kernels == [(64, 64, 80), (64, 64, 160), (64, 77, 160), (512, 77, 80), (512, 512, 40),
                       (512, 512, 80)]
    a = sma.attention_from_name(next(n for n in names if "_d80_" in n))
    assert (a.batch, a.heads) == (2, 8) and abs(a.scale - 80 ** -0.5) < 1e-7
    assert mod["main"].script().count("R.nn.attention") == 1


def _run_kernels(cases, tmp_path, *flags):
    """bench/gpu/wgsl_kernels.mjs on `cases` on this machine's adapter (lavapipe), subgroup
    matrices emulated: each case's row (rel against float64, or the WGSL error)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "bench" / "gpu"))
    from subgroup_matrix_emulation import emulated

    for c in cases:
        c["wgsl"] = emulated(c["wgsl"]) if "subgroupMatrix" in c["wgsl"] else c["wgsl"]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    subprocess.run(["node", str(root / "bench/gpu/wgsl_kernels.mjs"), str(tmp_path / "cases.json"),
                    str(tmp_path / "out.json"), "--iters", "0", "--emulated", "1", *flags],
                   cwd=root, check=True, capture_output=True, timeout=600)
    return {r["name"]: r for r in json.loads((tmp_path / "out.json").read_text())["cases"]}


def test_the_simt_gemm_kernel_computes_its_product(tmp_path):
    """The SIMT GEMM's WGSL as the build emits it, under Dawn here against float64: each block
    shape (8x8 and 4x4 values an invocation), float32 and float16 operands (float16 products
    or float32 ones where k is not split), plain and transposed B, a shared A across the batch,
    split k, a convolution's input read in place."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "gpu"))
    from kernel_cases import simt_case

    from stages.passes.simt_gemm import SimtGemm

    cases = [simt_case(name, g) for name, g in {
        "kn_f32_split2": SimtGemm(64, 64, 96, 2, 0, 96 * 64, False, 2, "float32", 64, 64, 8, 8, 8),
        "nk_f16": SimtGemm(128, 128, 64, 1, 0, 0, True, 1, "float16", 128, 128, 8, 8, 8,
                           product_dtype="float16"),
        "nk_f32_split2": SimtGemm(32, 64, 64, 1, 0, 0, True, 2, "float32", 32, 64, 4, 4, 16),
        "kn_f16": SimtGemm(64, 128, 32, 2, 0, 32 * 128, False, 1, "float16", 64, 128, 8, 8, 8),
        # convolutions read in place: 3x3 padded, over a batch with split k; 3x3 stride 2
        "conv_f32": SimtGemm(64, 256, 144, 2, 0, 16 * 256, False, 2, "float32", 64, 64, 8, 8, 8,
                             (16, 16, 16, 3, 3, 1, 1, 1, 1, 16)),
        "conv_s2_f16": SimtGemm(64, 64, 144, 1, 0, 0, False, 1, "float16", 32, 64, 4, 4, 16,
                                (16, 16, 16, 3, 3, 2, 2, 1, 1, 8), "float16"),
    }.items()]
    rows = _run_kernels(cases, tmp_path)
    assert len(rows) == 6
    for name, row in rows.items():
        assert "error" not in row and "errors" not in row and "messages" not in row, (name, row)
        # float16 products: one rounding (2^-11 relative)
        f16_products = name in ("nk_f16", "conv_s2_f16")
        assert row["rel"] < (2e-3 if f16_products else 1e-5), (name, row["rel"])


def test_the_gemm_kernel_computes_its_product(tmp_path):
    """The GEMM's WGSL, matrix ops written out per invocation, under Dawn here: tilings with
    one and several subgroups, split k, plain and transposed B, against float64. (The larger
    tilings' emulated accumulators, 16 x 1 KB per invocation, stall lavapipe for minutes; the
    kernel's indexing is the same code for every tiling.)"""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "gpu"))
    from kernel_cases import gemm_cases

    from stages.passes.subgroup_matrix_gemm import TILE, Gemm

    shapes = {"conv": Gemm(64, 128, 64, 2, 0, 64 * 128), "linear": Gemm(64, 64, 64, 1, b_transposed=True)}
    rows = _run_kernels(gemm_cases(shapes, [(2, 2, 1, 1), (1, 2, 2, 2)], (1, 2), TILE), tmp_path)
    assert len(rows) == 8
    for name, row in rows.items():
        assert "error" not in row and "errors" not in row, (name, row)
        assert row["rel"] < 1e-5, (name, row["rel"])


def test_the_staged_gemm_kernel_computes_its_product(tmp_path):
    """The GEMM staged through workgroup memory (16-byte operand loads, one or two stages),
    emulated as above: several subgroups per workgroup, split k, plain and transposed B, a
    convolution's input read in place (8 scalar loads packed into each 16-byte piece)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "gpu"))
    from kernel_cases import gemm_case

    from stages.passes.subgroup_matrix_gemm import Gemm

    cases = [gemm_case(name, g) for name, g in {
        "kn": Gemm(64, 64, 128, 2, 0, 128 * 64, False, tm=1, tn=1, wm=2, wn=2, bk=32),
        "kn_split2": Gemm(64, 64, 128, 2, 0, 128 * 64, False, splits=2, tm=1, tn=2, wm=2, wn=1, bk=32),
        "nk": Gemm(64, 96, 96, 1, b_transposed=True, tm=1, tn=1, wm=2, wn=2, bk=32),
        "nk_one_stage": Gemm(64, 64, 96, 1, b_transposed=True, tm=1, tn=1, wm=2, wn=2, bk=32,
                             stages=1),
        # convolutions read in place: 3x3 padded over a batch; 3x3 stride 2, one stage
        "conv": Gemm(64, 256, 288, 2, 0, 32 * 16 * 16, False, 1, 1, 1, 2, 2, 32, 2,
                     (32, 16, 16, 3, 3, 1, 1, 1, 1, 16)),
        "conv_s2": Gemm(64, 64, 288, 1, 0, 0, False, 1, 1, 1, 2, 2, 32, 1,
                        (32, 16, 16, 3, 3, 2, 2, 1, 1, 8)),
    }.items()]
    rows = _run_kernels(cases, tmp_path)
    assert len(rows) == 6
    for name, row in rows.items():
        assert "error" not in row and "errors" not in row, (name, row)
        assert row["rel"] < 1e-5, (name, row["rel"])


@pytest.mark.long
def test_the_attention_kernel_computes_attention(tmp_path):
    """The matrix units' attention under Dawn here (lavapipe, matrix ops written out) against
    float64: one and two row tiles a subgroup, one and two subgroups, 16 and 32 keys a step,
    with and without the next step's loads issued early, head_dim padded to the tiles, keys
    that do not fill the last step, and scores spread wide. Then every kernel the UNet's
    attention gets passes validation, uniformity rules included, and builds a pipeline
    (lavapipe would take minutes to run them)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "gpu"))
    from kernel_cases import UNET_ATTENTION, attention_case, attention_cases

    from stages.passes import subgroup_matrix_attention as sma

    cases = (attention_cases({"d8": sma.Attention(2, 32, 48, 2, 8, 1.0)},
                             ((1, 2, 16, 1), (2, 1, 16, 0)))
             + attention_cases({"d24/k21": sma.Attention(2, 32, 21, 2, 24, 1.0)}, ((1, 1, 32, 1),))
             + attention_cases({"d16/wide": sma.Attention(1, 64, 80, 1, 16, 3.0)}, ((2, 1, 32, 1),)))
    assert len(cases) == 4
    rows = _run_kernels(cases, tmp_path)
    for c in cases:
        row = rows[c["name"]]
        assert set(row) == {"name", "flop", "rel"} and row["rel"] < 2e-3, row
    planned = [sma.plan(a.batch, a.queries, a.keys, a.heads, a.head_dim, a.scale, "float16")
               for a in UNET_ATTENTION.values()]
    planned = [a for a in planned if a is not None]
    assert sorted(a.head_dim for a in planned) == [40, 40, 80, 80, 160, 160, 160, 160]
    cases = [attention_case(f"unet/{i}", a) for i, a in enumerate(planned)]
    rows = _run_kernels(cases, tmp_path, "--compile-only", "1")
    assert rows == {c["name"]: {"name": c["name"], "flop": c["flop"]} for c in cases}
