"""plan: static memory planning of a component's activations.

Lowers the dataflow blocks to explicit tensor allocations, then lets StaticPlanBlockMemory
reuse storage between tensors whose lifetimes do not overlap. plan.json records the
allocations and bytes before and after, which is what the GPU memory budget is made of, and
the largest single buffer: WebGPU binds a whole storage buffer to a kernel, so that is the
maxStorageBufferBindingSize the model needs. A target that names
max_storage_buffer_binding_size fails the build on a buffer above it.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.errors import BuildError

LOWER = ("RewriteDataflowReshape", "ToNonDataflow", "RemovePurityChecking", "CallTIRRewrite")


def _allocations(func, op_name: str) -> list[int]:
    """Byte sizes of the constant-size allocations made with `op_name` in a function body."""
    import tvm
    from tvm import relax

    sizes = []
    for block in func.body.blocks:
        for binding in block.bindings:
            call = binding.value
            if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
                    and call.op.name == op_name):
                continue
            shape = call.args[0]
            if not all(isinstance(d, tvm.tirx.IntImm) for d in shape.values):
                raise ValueError(f"plan: {op_name} with a symbolic shape; static shapes only")
            n = 1
            for d in shape.values:
                n *= int(d)
            if op_name == "relax.builtin.alloc_tensor":
                n *= tvm.runtime.DataType(call.args[1].value).bits // 8
            sizes.append(n)
    return sizes


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


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import tvm
    from tvm import relax

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    with target:
        mod = tvm.transform.Sequential([getattr(relax.transform, p)() for p in LOWER])(mod)
        before = _allocations(mod["main"], "relax.builtin.alloc_tensor")
        mod = relax.transform.StaticPlanBlockMemory()(mod)
        after = _allocations(mod["main"], "relax.memory.alloc_storage")
        unplanned = _allocations(mod["main"], "relax.builtin.alloc_tensor")   # the outputs
    params = _param_bytes(mod["main"])
    largest = max(after + unplanned + list(params.values()), default=0)
    limit = cfg.get("max_storage_buffer_binding_size")
    if limit is not None and largest > limit:
        what = next((f"param {n}" for n, b in params.items() if b == largest), "a planned buffer")
        raise BuildError(f"plan:{cfg['component']}: {what} of {largest} bytes is over "
                         f"max_storage_buffer_binding_size = {limit} (the target config); fix: "
                         f"raise the limit if the GPUs you ship to grant it, or shrink the shapes")
    plan = {
        "component": cfg["component"],
        "unplanned": {"allocations": len(before), "bytes": sum(before)},
        "planned": {"allocations": len(after), "bytes": sum(after)},
        "planned_fraction": round(sum(after) / sum(before), 6) if before else None,
        "largest_buffer_bytes": largest,
    }
    outputs["plan"].write_text(json.dumps(plan, indent=1) + "\n")
    outputs["module"].write_text(tvm.ir.save_json(mod))
