"""emit: compile a planned component for its target and export the library and its params.

relax.build runs the finishing lowering (memory planning already happened in `plan`) and the
TIR pipeline; the library is exported for the target (a shared object for llvm). The params
file is the import stage's, cast to the target dtype. The runner adds manifest.json.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stages.progress import phase

# The Relax passes after StaticPlanBlockMemory in TVM's default pipeline, in order.
FINALIZE = ("LowerAllocTensor", "KillAfterLastUse", "LowerRuntimeBuiltin", "ComputePrimValue",
            "VMShapeLower", "AttachGlobalSymbol")


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import tvm
    from tvm import relax

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    finalize = tvm.transform.Sequential([getattr(relax.transform, p)() for p in FINALIZE])
    phase(f"emit:{cfg['component']}", f"relax.build for {target.kind.name}")
    executable = relax.build(mod, target, relax_pipeline=finalize)
    executable.export_library(str(outputs["library"]))
    if cfg["dtype"] != "float32":
        raise NotImplementedError(f"emit: dtype {cfg['dtype']} params are not supported yet")
    shutil.copyfile(inputs["params"], outputs["params"])
