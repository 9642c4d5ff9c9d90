"""One way to run a compiled component in Python: its library in TVM's VM with its params, each
shard checked against the component's manifest (stages/runtime/params.py).

verify (llvm and cuda targets), generate and bench/tune_bench.py all run components through
this class, so what verify checked is what generate runs. tvm is imported when a component is
loaded, not with this module.
"""

from __future__ import annotations

from pathlib import Path


class Component:
    """A compiled component on `device` (a tvm device): `component(*arrays)` -> numpy.

    The inputs are numpy arrays in the order of the component's `main`; the params follow them,
    as TVM's export put them. params.CorruptShard is raised for a shard that does not match."""

    def __init__(self, library: Path, params_dir: Path, manifest: Path, device):
        import tvm
        from tvm import relax

        from stages.runtime import params

        weights = params.load(params_dir, manifest)
        self.device = device
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), device)
        self.weights = [tvm.runtime.tensor(a, device) for a in weights]

    def tensors(self, arrays) -> list:
        """numpy arrays as tvm tensors on the component's device (0-d ones stay 0-d)."""
        import numpy as np
        import tvm

        # not np.ascontiguousarray: it turns the 0-d timestep into shape (1,)
        return [tvm.runtime.tensor(np.asarray(a, order="C"), self.device) for a in arrays]

    def call(self, *tensors):
        """main(*tensors, *params) on tvm tensors: what a benchmark times."""
        return self.vm["main"](*tensors, *self.weights)

    def __call__(self, *arrays):
        return self.call(*self.tensors(arrays)).numpy()
