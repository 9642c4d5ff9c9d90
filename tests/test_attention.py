"""Attention without the score matrix: the kernel against numpy, and the builds that use it.

The kernels' numbers are checked here on CPU (the GPU kernel's body run one row per loop
iteration, and the CPU kernel, stages/passes/cpu_attention_kernel.py) with every input they
support: an additive bias broadcast over batch or heads, a causal mask, key
counts that are not a multiple of the keys folded in per step, float16 inputs. The GPU form runs
in every webgpu verify (G = 1 at the tiny size) and at full size on the H200 (G = 2 and 4 for
SD's head sizes 80 and 160: bench/results/h200/); here its structure is checked: the partial
dot products meet in workgroup memory, never in a storage buffer every workgroup shares.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import tvm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import llvm_target  # noqa: E402
from stages.passes import attention_kernel, cpu_attention_kernel  # noqa: E402
from stages.passes.gpu_limits import kernel_usage  # noqa: E402

WEBGPU = {"kind": "webgpu", "max_num_threads": 256, "max_shared_memory_per_block": 16384,
          "host": {"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm"}}


def _reference(q, k, v, bias, causal):
    q, k, v, bias = (x.astype(np.float64) for x in (q, k, v, bias))
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1]) + bias
    if causal:
        s[:, :, np.triu(np.ones((q.shape[1], k.shape[1]), bool), 1)] = -np.inf
    p = np.exp(s - s.max(-1, keepdims=True))
    return np.einsum("bhqk,bkhd->bqhd", p / p.sum(-1, keepdims=True), v)


@pytest.mark.parametrize("kernel", ["gpu-body", "cpu"])
@pytest.mark.parametrize("dtype,bias_shape,causal,head_dim,keys,max_rel", [
    ("float32", (1, 1, 1, 1), False, 40, 77, 1e-6),     # the UNet's and the VAE's: no mask
    ("float32", (1, 1, 1, 1), False, 40, 300, 1e-6),    # keys in 3 of the CPU kernel's blocks
    ("float32", (2, 1, 37, 77), True, 16, 77, 1e-6),    # CLIP's: an additive mask and causal
    ("float32", (2, 1, 37, 300), True, 16, 300, 1e-6),  # causal over blocks: rows end in one
    ("float16", (1, 3, 37, 77), False, 12, 77, 2e-3),   # a bias broadcast over the batch
])
def test_kernel_matches_numpy(kernel, dtype, bias_shape, causal, head_dim, keys, max_rel):
    """77 or 300 keys (not a multiple of the keys per step or block), 37 queries (not a multiple
    of the CPU kernel's rows), head dims in vectors of 8 (SD's 40), 16 and 4."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 37, 3, head_dim)).astype(dtype)
    k = rng.standard_normal((2, keys, 3, head_dim)).astype(dtype)
    v = rng.standard_normal((2, keys, 3, head_dim)).astype(dtype)
    bias = (rng.standard_normal(bias_shape) if bias_shape != (1, 1, 1, 1)
            else np.zeros(bias_shape)).astype(dtype)
    if kernel == "cpu":
        func = cpu_attention_kernel.build(q.shape, k.shape, v.shape, bias.shape, dtype, None,
                                          causal)
    else:   # the GPU kernel's body, one row per loop iteration
        func = attention_kernel.build(q.shape, k.shape, v.shape, bias.shape, dtype, None,
                                      causal, gpu=False)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=llvm_target())
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(x, dev) for x in (q, k, v, bias, np.zeros(q.shape, dtype))]
    lib(*args)
    got, want = args[-1].numpy().astype(np.float64), _reference(q, k, v, bias, causal)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < max_rel


@pytest.mark.parametrize("head_dim,threads_per_row", [(40, 1), (80, 2), (160, 4), (512, 8)])
def test_gpu_kernel_splits_wide_heads_and_exchanges_in_workgroup_memory(head_dim,
                                                                        threads_per_row):
    assert attention_kernel.threads_per_row(head_dim) == threads_per_row
    shape = (2, 256, 2, head_dim)
    func = attention_kernel.build(shape, shape, shape, (1, 1, 1, 1), "float16", None, False,
                                  gpu=True, max_threads=256)
    # no source span names this checkout's path: the module is the same in every clone
    assert str(Path(__file__).resolve().parents[1]) not in tvm.ir.save_json(func)
    use = kernel_usage(func)
    assert use["threads"] == attention_kernel.THREADS
    assert use["shared_bytes"] == attention_kernel.shared_bytes(head_dim)
    with tvm.target.Target(WEBGPU) as target:
        lib = tvm.tirx.build(tvm.IRModule({"attn": func.with_attr("global_symbol", "attn")}),
                             target=target)
    wgsl = lib.imports[0].inspect_source()
    storage = [line for line in wgsl.splitlines() if "var<storage" in line]
    assert len(storage) == 5, storage          # q, k, v, bias, out: nothing shared across groups
    assert ("var<workgroup> part" in wgsl) == (threads_per_row > 1)
    assert "inf" not in wgsl                   # WGSL has no infinity literal


def test_attention_goes_to_the_simt_kernel_and_the_rest_stays():
    """webgpu's plain variants: attention without a mask, in float32 and float16, goes to the
    SIMT kernel (stages/passes/simt_attention.py), the 77-key cross-attention too; a causal
    mask and a head of 160 stay on the TIR kernel."""
    from tvm import relax

    from stages.passes import simt_attention

    for dtype in ("float32", "float16"):
        bb = relax.BlockBuilder()
        q = relax.Var("q", relax.TensorType((2, 64, 8, 40), dtype))
        k = relax.Var("k", relax.TensorType((2, 77, 8, 40), dtype))
        wide = relax.Var("wide", relax.TensorType((2, 64, 2, 160), dtype))
        with bb.function("main", [q, k, wide]):
            with bb.dataflow():
                outs = [bb.emit(relax.op.nn.attention(q, q, q)),
                        bb.emit(relax.op.nn.attention(q, k, k)),
                        bb.emit(relax.op.nn.attention(q, q, q, causal_mask="TopLeft")),
                        bb.emit(relax.op.nn.attention(wide, wide, wide))]
                out = bb.emit_output(relax.Tuple(outs))
            bb.emit_func_output(out)
        mod = simt_attention.make(tvm.target.Target(WEBGPU))(bb.get())
        names = sorted(gv.name_hint for gv in mod.functions if gv.name_hint.startswith("simtattn_"))
        assert len(names) == 2
        kernels = [simt_attention.attention_from_name(n) for n in names]
        assert sorted((a.batch, a.queries, a.keys, a.heads, a.head_dim, a.dtype) for a in kernels) == [
            (2, 64, 64, 8, 40, dtype), (2, 64, 77, 8, 40, dtype)]
        assert all(abs(a.scale - 40 ** -0.5) < 1e-7 for a in kernels)
        assert mod["main"].script().count("R.nn.attention") == 2


def test_the_simt_attention_kernel_computes_attention(tmp_path):
    """The kernel's WGSL under Dawn here (lavapipe) against float64: float32 and float16, one
    and two query rows an invocation, 32, 16 and 8 keys a step (96 keys: 3 and 6 whole steps;
    45: whole steps, then one of the remaining 13), the keys whole or split in 2 and 4 parts
    (96 only) merged at the end, the next step's K and V prefetched into registers or not,
    over a batch and two heads, scores spread wide (scale 1). At head_dim 8: lavapipe takes about a minute to compile each unrolled
    head_dim-40 kernel, whose code is the same but longer."""
    import json
    import subprocess

    from stages.passes.subgroup_matrix_attention import Attention

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "bench" / "gpu"))
    from kernel_cases import simt_attention_cases

    shapes = {"d8": Attention(2, 64, 96, 2, 8, 1.0), "d8/k45": Attention(2, 64, 45, 2, 8, 1.0)}
    cases = simt_attention_cases(shapes, tilings=((64, 32, 1, 1), (64, 16, 2, 1, 1), (64, 16, 2, 2),
                                                  (64, 8, 1, 4, 1)))
    assert len(cases) == 12
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    subprocess.run(["node", str(root / "bench/gpu/wgsl_kernels.mjs"), str(tmp_path / "cases.json"),
                    str(tmp_path / "out.json"), "--iters", "0", "--emulated", "1"],
                   cwd=root, check=True, capture_output=True, timeout=600)
    rows = json.loads((tmp_path / "out.json").read_text())["cases"]
    assert len(rows) == 12
    for row in rows:
        assert "error" not in row and "errors" not in row and "messages" not in row, row
        assert row["rel"] < (1e-5 if "float32" in row["name"] else 2e-3), row
