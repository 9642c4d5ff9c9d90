"""plan: static memory planning of a component's activations.

Lowers the dataflow blocks to explicit tensor allocations, then lets StaticPlanBlockMemory
reuse storage between tensors whose lifetimes do not overlap. plan.json records the
allocations and bytes before and after, which is what the GPU memory budget is made of, and
the largest single buffer: WebGPU binds a whole storage buffer to a kernel, so that is the
maxStorageBufferBindingSize the model needs. A target that names
max_storage_buffer_binding_size fails the build on a buffer above it. It also lists the params
`main` takes and their dtypes, which is what emit writes the parameter shards as.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.engine.errors import BuildError
from stages.engine.rule import Rule, Spec

def _allocation_bytes(call, op_name: str) -> int | None:
    """Byte size of `call` if it is a constant-size allocation made with `op_name`, else None."""
    import tvm
    from tvm import relax

    if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
            and call.op.name == op_name):
        return None
    shape = call.args[0]
    if not all(isinstance(d, tvm.tirx.IntImm) for d in shape.values):
        raise ValueError(f"plan: {op_name} with a symbolic shape; static shapes only")
    n = 1
    for d in shape.values:
        n *= int(d)
    if op_name == "relax.builtin.alloc_tensor":
        n *= tvm.runtime.DataType(call.args[1].value).bits // 8
    return n


def _allocations(func, op_name: str) -> list[int]:
    """Byte sizes of the constant-size allocations made with `op_name` in a function body."""
    sizes = (_allocation_bytes(b.value, op_name) for block in func.body.blocks
             for b in block.bindings)
    return [n for n in sizes if n is not None]


def _param_bytes(func) -> dict[str, int]:
    """Bytes of each input and param of `main`: each is a buffer a kernel binds whole."""
    import tvm

    out = {}
    for var in func.params:
        sinfo = var.ty
        n = tvm.runtime.DataType(sinfo.dtype).bits // 8
        for d in sinfo.shape.values:
            n *= int(d)
        out[var.name] = n
    return out


def _bound_by(func, sizes: dict[str, int], nbytes: int) -> tuple[str, str] | None:
    """(buffer, kernel): the first buffer of `nbytes` that a kernel binds, and that kernel.

    A buffer is a param of `main` (by name) or a planned storage; tensors placed in a storage
    count as it. `sizes` gives each param's bytes.
    """
    import tvm
    from tvm import relax

    storage: dict[str, int] = {}     # storage var -> bytes
    where: dict[str, str] = {}       # tensor var -> its storage var
    for block in func.body.blocks:
        for binding in block.bindings:
            call, name = binding.value, binding.var.name
            if not isinstance(call, relax.Call):
                continue
            size = _allocation_bytes(call, "relax.memory.alloc_storage")
            if size is not None:
                storage[name] = size
            elif isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.memory.alloc_tensor":
                where[name] = call.args[0].name
            elif isinstance(call.op, tvm.ir.GlobalVar):
                for arg in call.args:
                    if not isinstance(arg, relax.Var):
                        continue
                    if sizes.get(arg.name) == nbytes:
                        return f"param {arg.name}", call.op.name_hint
                    home = where.get(arg.name)
                    if home is not None and storage.get(home) == nbytes:
                        return f"an activation buffer ({home})", call.op.name_hint
    return None


def spec(r: Rule) -> Spec:
    return r.spec({"module": r.out("schedule", "module")},
                  {"module": r.per_target / "module.json", "plan": r.per_target / "plan.json"},
                  {"component": r.component, "target": r.target["tvm"], **r.binding_limit,
                   "tvm_passes": list(r.tvm_passes)})


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import tvm
    from tvm import relax

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    with target:
        mod = tvm.transform.Sequential([getattr(relax.transform, p)() for p in cfg["tvm_passes"]])(mod)
        before = _allocations(mod["main"], "relax.builtin.alloc_tensor")
        mod = relax.transform.StaticPlanBlockMemory()(mod)
        after = _allocations(mod["main"], "relax.memory.alloc_storage")
        unplanned = _allocations(mod["main"], "relax.builtin.alloc_tensor")   # the outputs
    params = _param_bytes(mod["main"])
    num_inputs = int(mod["main"].attrs["num_input"])
    largest = max(after + unplanned + list(params.values()), default=0)
    limit = cfg.get("max_storage_buffer_binding_size")
    if limit is not None and largest > limit:
        found = _bound_by(mod["main"], params, largest)
        what, kernel = found if found else ("a buffer", "a kernel")
        raise BuildError(f"plan:{cfg['component']}: kernel {kernel} binds {what} of {largest} "
                         f"bytes, over max_storage_buffer_binding_size = {limit} (the target "
                         f"config); fix: raise the limit if the GPUs you ship to grant it, or "
                         f"shrink the shapes")
    plan = {
        "component": cfg["component"],
        "unplanned": {"allocations": len(before), "bytes": sum(before)},
        "planned": {"allocations": len(after), "bytes": sum(after)},
        "planned_fraction": round(sum(after) / sum(before), 6) if before else None,
        "largest_buffer_bytes": largest,
        # the params in the order `main` takes them, and their dtypes: what emit writes
        "param_names": [p.name for p in mod["main"].params[num_inputs:]],
        "param_dtypes": [str(p.ty.dtype) for p in mod["main"].params[num_inputs:]],
    }
    outputs["plan"].write_text(json.dumps(plan, indent=1) + "\n")
    outputs["module"].write_text(tvm.ir.save_json(mod))
