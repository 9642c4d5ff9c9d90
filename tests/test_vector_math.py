"""float32 exp, sigmoid and erf in llvm kernels run as arithmetic in lanes (stages/passes/
vector_math.py), not one C library call per lane, and give what the C library gives, over the
whole float32 range the pass clamps to and past it; cpu_rule's Spatial rule makes one nest of an
elementwise chain (speed: bench/tune_bench.py)."""

import math

import numpy as np
import pytest
import tvm
from tvm import te, topi

from conftest import llvm_target
from stages.passes import cpu_default_schedule, vector_math

ERF = np.vectorize(math.erf)


def _compiled(f):
    target = llvm_target()
    with target:
        mod = cpu_default_schedule.schedule_of(f, target).mod
    return mod, tvm.compile(vector_math.make(target)(mod), target=target)


def _run(lib, x):
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(x, dev), tvm.runtime.tensor(np.zeros_like(x), dev)]
    lib(*args)
    return args[1].numpy().astype(np.float64)


@pytest.mark.parametrize("name,op,want,max_abs,max_rel", [
    ("exp", topi.exp, np.exp, 0, 2e-7),
    ("sigmoid", topi.sigmoid, lambda x: 1 / (1 + np.exp(-x)), 1e-38, 2e-7),
    ("erf", topi.erf, ERF, 6e-7, 0),
])
def test_rewritten_functions_match_the_c_library_in_lanes(name, op, want, max_abs, max_rel):
    """Every float32 from -87 to 88 in steps, both ends past the clamp (exp: where it clamps,
    the clamped value), and 0; the kernel holds no call of expf/erff."""
    x = np.concatenate([np.linspace(-87, 88, 350_001), [-200, -88, 0, 89, 200]])
    x = x.astype(np.float32)[None]
    X = te.placeholder(x.shape, name="X")
    _, lib = _compiled(te.create_prim_func([X, op(X)]))
    asm = lib.mod.inspect_source("asm")
    assert "expf" not in asm and "erff" not in asm
    got = _run(lib, x)
    ref = want(np.clip(x.astype(np.float64), -87, 88) if name == "exp" else x.astype(np.float64))
    err = np.abs(got - ref)
    assert np.all(err <= max_abs + max_rel * np.abs(ref)), (name, x[err > max_abs + max_rel
                                                                    * np.abs(ref)][:5])


def test_an_elementwise_chain_is_one_nest():
    """GroupNorm's scale and shift, then SiLU: x * sigmoid(x) over one product, in one
    parallel nest (it was four, each a pass over memory)."""
    shape = (1, 8, 16, 32)
    X, G = te.placeholder(shape, name="X"), te.placeholder((1, 8, 1, 1), name="G")
    y = topi.add(topi.multiply(X, G), 1.0)
    mod, lib = _compiled(te.create_prim_func([X, G, topi.multiply(y, topi.sigmoid(y))]))
    assert mod["main"].script().count("T.parallel(") == 1
    rng = np.random.default_rng(0)
    x, g = (rng.uniform(-8, 8, s).astype(np.float32) for s in (shape, (1, 8, 1, 1)))
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in (x, g, np.zeros(shape, np.float32))]
    lib(*args)
    y = x.astype(np.float64) * g + 1
    np.testing.assert_allclose(args[2].numpy(), y / (1 + np.exp(-y)), rtol=1e-6, atol=1e-6)
