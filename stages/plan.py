"""plan: static memory planning of a component's activations.

Lowers the dataflow blocks to explicit tensor allocations, then lets StaticPlanBlockMemory
reuse storage between tensors whose lifetimes do not overlap. plan.json records the
allocations and bytes before and after, which is what the GPU memory budget is made of.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    plan = {
        "component": cfg["component"],
        "unplanned": {"allocations": len(before), "bytes": sum(before)},
        "planned": {"allocations": len(after), "bytes": sum(after)},
        "planned_fraction": round(sum(after) / sum(before), 6) if before else None,
    }
    outputs["plan"].write_text(json.dumps(plan, indent=1) + "\n")
    outputs["module"].write_text(tvm.ir.save_json(mod))
