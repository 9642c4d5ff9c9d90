"""llvm kernels without a tuning record get threads and vector lanes (stages/passes/cpu_rule.py):
convolutions and matmuls accumulate output tiles in registers and give the same bits as the plain
loops. That whole components stay right is verify's
job (the build below passed it); speed is bench/tune_bench.py's."""

import json

import numpy as np
import pytest
import tvm

from conftest import llvm_target
from stages.passes import cpu_rule
from stages.runtime import weight_panels

COMPONENTS = ("unet", "vae_decoder", "vae_encoder")


def _module(ws, component, stage):
    return tvm.ir.load_json((ws / "build" / "tiny" / "llvm" / component / stage
                             / "module.json").read_text())


def _kernels(mod, word):
    return {gv.name_hint: mod[gv] for gv in mod.get_global_vars()
            if word in gv.name_hint and isinstance(mod[gv], tvm.tirx.PrimFunc)}


def test_every_convolution_is_tiled_in_parallel(built):
    ws, _ = built
    for component in COMPONENTS:
        convs = _kernels(_module(ws, component, "schedule"), "conv2d")
        assert len(convs) >= 3, component
        for name, func in convs.items():
            script = func.script()
            assert "T.parallel(" in script and "T.vectorized(" in script, (component, name)
            assert "_local = T.sblock_alloc_buffer(" in script, (component, name)


def test_linear_layers_are_tiled_matmuls(built):
    """On CPUs the weight's transpose is not read in place (transpose_matmul is GPU-only): a
    linear layer is a plain matmul, tiled like a convolution."""
    ws, _ = built
    scheduled = _kernels(_module(ws, "unet", "schedule"), "matmul")
    assert not [n for n in scheduled if "NT_matmul" in n], sorted(scheduled)
    tiled = [n for n, f in scheduled.items() if "_local = T.sblock_alloc_buffer(" in f.script()]
    assert len(tiled) >= 4, sorted(scheduled)


def test_linear_weights_are_stored_as_panels(built):
    """A weight read only as permute_dims(W) by matmuls is a param of W.T in panels one vector
    register wide (emit writes them; the build's verify checks the numbers): no kernel copies a
    weight per call, and each matmul tile runs its lanes along one panel."""
    ws, _ = built
    lanes = cpu_rule.register_lanes(llvm_target())
    for component in ("text_encoder", "unet"):
        plan = json.loads((ws / "build" / "tiny" / "llvm" / component / "plan"
                           / "plan.json").read_text())
        names = plan["param_names"]
        stored = {n: weight_panels.original(n) for n in names}
        stored = {n: o for n, o in stored.items() if o[1] is not None}
        assert len(stored) >= 4, component
        assert not {w for w, _ in stored.values()} & set(names), component
        # one register wide; where n is no multiple of that, one panel of all n columns
        assert all(width == lanes or width % lanes for _, width in stored.values()), stored
        main = _module(ws, component, "passes")["main"]
        params = {p.name for p in main.params}
        assert not [b for blk in main.body.blocks for b in blk.bindings
                    if "permute_dims" in str(getattr(b.value, "op", ""))
                    and b.value.args[0].name in params], component
        scheduled = _module(ws, component, "schedule")
        readers = {str(gv.name_hint): scheduled[gv].script()
                   for gv in scheduled.get_global_vars() if gv.name_hint != "main"
                   and any("_panels" in p.name for p in scheduled[gv].params)}
        assert readers and all("matmul_panels" in k for k in readers), sorted(readers)
        for script in readers.values():   # read by matmuls alone, tiles one panel wide
            assert f"T.vectorized(T.int64({lanes}))" in script


def _run(func, inputs):
    target = llvm_target()
    with target:
        lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                          target=target)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(x, dev) for x in inputs]
    lib.mod["main"](*args)
    return args[-1].numpy()


def _inputs(func, seed=0):
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, [int(s) for s in a.shape]).astype(str(a.dtype))
            for a in ArgInfo.from_prim_func(func)]


@pytest.mark.parametrize("word", ["conv2d", "matmul"])
def test_scheduled_kernels_compute_what_the_plain_loops_do(built, word):
    from stages.passes import cpu_default_schedule

    ws, _ = built
    plain = _kernels(_module(ws, "unet", "passes"), word)
    target = llvm_target()
    checked = 0
    for name, func in sorted(plain.items())[:6]:
        with target:
            scheduled = cpu_default_schedule.make(target)(tvm.IRModule({name: func}))[name]
        if not scheduled.attrs or not scheduled.attrs.get("tirx.is_scheduled"):
            continue
        inputs = _inputs(func)
        want, got = _run(func, inputs), _run(scheduled, inputs)
        # the lanes are other outputs: each output's sum runs in the same order
        assert np.array_equal(want, got), name
        checked += 1
    assert checked >= 2, (word, sorted(plain))


def test_tile_rows_fit_the_register_file():
    """A tile's accumulators, an operand vector per register of lanes and the broadcast fit the
    instruction set's registers: AVX2 (16) takes 6 rows of two registers, AVX-512 (32) the 8
    rows it was measured best with, a one-register panel tile on AVX2 its 11."""
    def target(mcpu=None):
        return tvm.target.Target({"kind": "llvm", **({"mcpu": mcpu} if mcpu else {})})

    assert cpu_rule.tile_rows(target("x86-64-v3"), 16, cpu_rule.ROWS) == 6
    assert cpu_rule.tile_rows(target("x86-64-v4"), 32, cpu_rule.ROWS) == 8
    assert cpu_rule.tile_rows(target("x86-64-v3"), 8, cpu_rule.PANEL_ROWS) == 11
    assert cpu_rule.tile_rows(target(), 8, cpu_rule.ROWS) == 6   # SSE2: 4 lanes a register
