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


# How a wasm library is linked: TVM's tvmjs link flags (tvm.support.emcc), with the host code
# and the packed WGSL emitted as wasm objects (Debian's emcc links with LLVM 14, which cannot
# read TVM's LLVM 22 bitcode) and the runtime objects from the toolchain stage.
WASM_LINK_FLAGS = ("-O3", "--no-entry", "-s", "WASM_BIGINT=1", "-s", "ERROR_ON_UNDEFINED_SYMBOLS=0",
                   "-s", "STANDALONE_WASM=1", "-s", "ALLOW_MEMORY_GROWTH=1",
                   "-s", "TOTAL_MEMORY=160MB")


def wasm_linker(runtime_objects: list[Path]):
    """An export_library fcompile that links a tvmjs-loadable .wasm with emcc."""
    import subprocess

    from stages.toolchain.runtime_objects import emcc_env

    def link(output, objects, options=None, **_kwargs):
        cmd = ["emcc", *WASM_LINK_FLAGS, "-o", str(output), *map(str, runtime_objects),
               *map(str, objects), *(options or [])]
        proc = subprocess.run(cmd, env=emcc_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"emcc link failed ({proc.returncode}): {proc.stderr[-4000:]}")

    link.object_format = "o"
    return link


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import tvm
    from tvm import relax

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    finalize = tvm.transform.Sequential([getattr(relax.transform, p)() for p in FINALIZE])
    phase(f"emit:{cfg['component']}", f"relax.build for {target.kind.name}")
    executable = relax.build(mod, target, relax_pipeline=finalize)
    if outputs["library"].suffix == ".wasm":
        runtime = [p for n, p in inputs.items() if n.endswith(".o")]
        executable.export_library(str(outputs["library"]), fcompile=wasm_linker(runtime))
    else:
        executable.export_library(str(outputs["library"]))
    if cfg["dtype"] != "float32":
        raise NotImplementedError(f"emit: dtype {cfg['dtype']} params are not supported yet")
    shutil.copyfile(inputs["params"], outputs["params"])
