"""compile: relax.build of a planned component for its target, exported as its library.

relax.build runs the finishing lowering (memory planning already happened in `plan`) and the
TIR pipeline; the library is exported for the target (a shared object for llvm, a wasm module
with its WGSL for webgpu; the hand-written kernels go in as it is packed:
stages/passes/wgsl_swap.py). It is a stage of its own, apart from emit, because it reads only
the planned module: new weights of the same architecture (a LoRA, a fine-tune) reach emit's
parameter shards and leave every kernel compiled.
"""

from __future__ import annotations

from pathlib import Path

from stages.engine.progress import phase
from stages.engine.rule import Rule, Spec

# How a wasm library is linked: TVM's tvmjs link flags (tvm.support.emcc), with the host code
# and the packed WGSL emitted as wasm objects (Debian's emcc links with LLVM 14, which cannot
# read TVM's LLVM 22 bitcode) and the runtime objects from the toolchain stage.
# -O2, not tvmjs's -O3: binaryen's -O3 took 13 s more of a 53 s compile (the trained model's VAE
# encoder on 2 cores, 12 such links a webgpu build) for a wasm 2.6 % smaller (xz: 421 vs 434 KB).
WASM_LINK_FLAGS = ("-O2", "--no-entry", "-s", "WASM_BIGINT=1", "-s", "ERROR_ON_UNDEFINED_SYMBOLS=0",
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


def wgsl_bodies(name: str, source: str) -> str | None:
    """Our WGSL for a kernel of the GEMM and attention passes (None: TVM's stays)."""
    from stages.passes import simt, simt_attention, subgroup_matrix, subgroup_matrix_attention

    for family in (subgroup_matrix, subgroup_matrix_attention, simt, simt_attention):
        body = family.wgsl_body(name, source)
        if body is not None:
            return body
    return None


def spec(r: Rule) -> Spec:
    """The planned module (and, for wasm, the runtime objects) in; the library out."""
    inputs = {"module": r.out("plan", "module")}
    if r.target["library"] == "wasm":
        inputs.update(r.spec_of("toolchain", "model").outputs)
    return r.spec(inputs, {"library": r.per_target / f"{r.component}.{r.target['library']}"},
                  {"component": r.component, "target": r.target["tvm"], **r.feat,
                   "tvm_passes": list(r.tvm_passes)})


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import tvm
    from tvm import relax

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    finalize = tvm.transform.Sequential([getattr(relax.transform, p)() for p in cfg["tvm_passes"]])
    phase(f"compile:{cfg['component']}", f"relax.build for {target.kind.name}")
    executable = relax.build(mod, target, relax_pipeline=finalize)
    if outputs["library"].suffix == ".wasm":
        runtime = [p for n, p in inputs.items() if n.endswith(".o")]
        from stages.passes.wgsl_swap import pack_imports

        executable.export_library(str(outputs["library"]), fcompile=wasm_linker(runtime),
                                  fpack_imports=pack_imports(wgsl_bodies))
    else:
        executable.export_library(str(outputs["library"]))
