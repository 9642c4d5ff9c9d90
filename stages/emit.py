"""emit: compile a planned component for its target and export the library and its params.

relax.build runs the finishing lowering (memory planning already happened in `plan`) and the
TIR pipeline; the library is exported for the target (a shared object for llvm, a wasm module
with its WGSL for webgpu; the hand-written kernels go in as it is packed:
stages/passes/wgsl_swap.py). The params become a tvmjs tensor cache (params/tensor-cache.json +
params_shard_N.bin, raw bytes in the dtype `main` takes, `shard_mb` per shard): the format the
page downloads shard by shard. The runner adds manifest.json with the sha256 of every file,
which is what loaders check the shards against.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from stages.engine.progress import phase
from stages.engine.rule import Rule, Spec

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


def wgsl_bodies(name: str, source: str) -> str | None:
    """Our WGSL for a kernel of the GEMM and attention passes (None: TVM's stays)."""
    from stages.passes import simt, simt_attention, subgroup_matrix, subgroup_matrix_attention

    for family in (subgroup_matrix, subgroup_matrix_attention, simt, simt_attention):
        body = family.wgsl_body(name, source)
        if body is not None:
            return body
    return None


def spec(r: Rule) -> Spec:
    """The planned module and the params in; the library, its params as a tensor cache and the
    component's manifest.json out, under dist/."""
    inputs = {"module": r.out("plan", "module"), "params": r.out("import", "params")}
    if r.target["library"] == "wasm":
        inputs.update(r.spec_of("toolchain", "model").outputs)
    return r.spec(inputs,
                  {"library": r.dist / f"{r.component}.{r.target['library']}",
                   "params": r.dist / "params", "manifest": r.dist / "manifest.json"},
                  {"component": r.component, "target": r.target["tvm"],
                   "precision": r.precision, "shard_mb": r.target["shard_mb"], **r.feat,
                   "tvm_passes": list(r.tvm_passes)},
                  modules=("stages.engine.manifest",),   # the runner writes manifest.json
                  trees=frozenset({"params"}))


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import tvm
    from tvm import relax

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    finalize = tvm.transform.Sequential([getattr(relax.transform, p)() for p in cfg["tvm_passes"]])
    phase(f"emit:{cfg['component']}", f"relax.build for {target.kind.name}")
    executable = relax.build(mod, target, relax_pipeline=finalize)
    if outputs["library"].suffix == ".wasm":
        runtime = [p for n, p in inputs.items() if n.endswith(".o")]
        from stages.passes.wgsl_swap import pack_imports

        executable.export_library(str(outputs["library"]), fcompile=wasm_linker(runtime),
                                  fpack_imports=pack_imports(wgsl_bodies))
    else:
        executable.export_library(str(outputs["library"]))
    write_params(mod, inputs["params"], outputs["params"], cfg["shard_mb"])


def write_params(mod, params_file: Path, out_dir: Path, shard_mb: int) -> None:
    """The import stage's params as a tensor cache, each in the dtype `main` declares for it.

    metadata.params lists the names in the order `main` takes them (shards may hold them in
    another order: a tensor over half a shard gets a shard of its own).
    """
    import numpy as np
    from safetensors import safe_open
    from tvm.contrib import tvmjs

    main = mod["main"]
    declared = [str(p.ty.dtype) for p in main.params[int(main.attrs["num_input"]):]]
    with safe_open(str(params_file), framework="numpy") as f:
        order = json.loads(f.metadata()["order"])
        if len(order) != len(declared):
            raise ValueError(f"emit: {len(order)} params for {len(declared)} in main's signature")

        def tensors():
            for name, dtype in zip(order, declared):
                yield name, np.ascontiguousarray(f.get_tensor(name).astype(dtype, copy=False))

        with contextlib.redirect_stdout(io.StringIO()):   # its per-tensor progress lines
            tvmjs.dump_tensor_cache(tensors(), str(out_dir), encode_format="raw",
                                    meta_data={"params": order}, shard_cap_mb=shard_mb,
                                    show_progress=False)
