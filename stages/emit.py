"""emit: a component's artifact under dist/: its compiled library, its params and manifest.json.

The params become a tvmjs tensor cache (params/tensor-cache.json + params_shard_N.bin, raw
bytes in the dtype `main` takes, `shard_mb` per shard): the format the page downloads shard by
shard. The build's LoRAs (stages/lora.py) are added to the float32 weights here, before the
cast, as diffusers' fuse_lora adds them; a weight `main` takes as int8 (stages/passes/
int8_weights.py) is quantized here, after them (stages/runtime/quantize.py), and one `main` takes
as panels (stages/passes/weight_panels.py) is cut into them here. The runner adds
manifest.json with the sha256 of every file, which is what loaders check the shards against.
Nothing here compiles (stages/compile.py does): new weights of the same architecture rebuild
this stage and what reads it, no kernel.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

from stages.engine.rule import Rule, Spec


def spec(r: Rule) -> Spec:
    """The compiled library, the float32 params, the dtypes `main` takes them in and the LoRA
    factors for this component (when the build has any) in; the library, its params as a
    tensor cache and the component's manifest.json out, under dist/.

    A variant of an extra image size writes no params: it takes the same ones as the variant at
    the default size (same names, same dtypes: checked against that variant's plan), whose
    shards the page downloads once for every size."""
    if r.size is not None:
        return r.spec({"library": r.out("compile", "library"), "plan": r.out("plan", "plan"),
                       "default_plan": r.out("plan", "plan", r.default)},
                      {"library": r.dist / f"{r.component}.{r.target['library']}",
                       "manifest": r.dist / "manifest.json"},
                      {"component": r.component, "params_of": r.default},
                      modules=("stages.engine.manifest",))
    inputs = {"library": r.out("compile", "library"), "params": r.out("import", "params"),
              "plan": r.out("plan", "plan")}
    if r.cfg.loras:
        factors = r.spec_of("lora", "model").outputs
        if r.base in factors:
            inputs["lora"] = factors[r.base]
    return r.spec(inputs,
                  {"library": r.dist / f"{r.component}.{r.target['library']}",
                   "params": r.dist / "params", "manifest": r.dist / "manifest.json"},
                  {"component": r.component, "shard_mb": r.target["shard_mb"]},
                  modules=("stages.engine.manifest",),   # the runner writes manifest.json
                  trees=frozenset({"params"}))


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    shutil.copyfile(inputs["library"], outputs["library"])
    plan = json.loads(inputs["plan"].read_text())
    if "default_plan" in inputs:
        default = json.loads(inputs["default_plan"].read_text())
        for key in ("param_names", "param_dtypes"):
            if plan[key] != default[key]:
                raise ValueError(f"emit:{cfg['component']}: main takes other params than "
                                 f"{cfg['params_of']} ({key} differ), so it cannot share its "
                                 f"shards; fix: make the pass that changed them independent of "
                                 f"the image size (stages/passes/pipeline.py)")
        return
    write_params(inputs["params"], plan["param_names"], plan["param_dtypes"], outputs["params"],
                 cfg["shard_mb"], inputs.get("lora"))


def write_params(params_file: Path, names: list[str], dtypes: list[str], out_dir: Path,
                 shard_mb: int, lora_file: Path | None = None) -> None:
    """The import stage's params as a tensor cache of the params `main` takes (`names`), each
    in the dtype it declares, with the LoRA factors' `up @ down` added to the weights they
    change, and the int8 weights' packed bytes and scales made from those.

    metadata.params lists the names in the order `main` takes them (shards may hold them in
    another order: a tensor over half a shard gets a shard of its own).
    """
    import numpy as np
    from safetensors import safe_open
    from tvm.contrib import tvmjs

    from stages.runtime import lora, quantize, weight_panels

    factors = {}
    if lora_file is not None:
        with safe_open(str(lora_file), framework="numpy") as f:
            factors = {k: f.get_tensor(k) for k in f.keys()}
    with safe_open(str(params_file), framework="numpy") as f:
        meta = f.metadata()
        order = json.loads(meta["order"])
        weights = json.loads(meta["weights"])   # param name -> the state-dict key it holds
        sources = [quantize.source(name) for name in names]
        scale_dtypes = quantize.int8_weights(names, dtypes)
        missing = [name for name, (src, _) in zip(names, sources)
                   if weight_panels.original(src)[0] not in order]
        if missing:
            raise ValueError(f"emit: main takes {missing[:3]}, which import did not write")
        if len(names) != len(dtypes):
            raise ValueError(f"emit: plan.json lists {len(names)} params, {len(dtypes)} dtypes")
        changed = {weights[name]: name for name in order if f"{weights.get(name)}.up" in factors}
        left = {k.rsplit(".", 1)[0] for k in factors} - set(changed)
        if left:
            raise ValueError(f"emit: LoRA factors for {sorted(left)[:3]}, which main does not "
                             f"take as params")

        def weight(name):
            name, lanes = weight_panels.original(name)
            if lanes is not None:
                return weight_panels.panels(weight(name), lanes)
            value = f.get_tensor(name)
            key = weights.get(name)
            if key in changed:
                value = value + lora.delta(factors[f"{key}.up"], factors[f"{key}.down"],
                                           value.shape)
            return value

        def tensors():
            packed = {}                  # a weight's int8 pair, from its _q8 to its _q8scale
            for name, dtype, (src, part) in zip(names, dtypes, sources):
                if part is None:
                    value = weight(src)
                elif part == "packed":
                    value, packed[src] = quantize.quantize(weight(src), scale_dtypes[src])
                else:
                    value = packed.pop(src)
                yield name, np.ascontiguousarray(value.astype(dtype, copy=False))

        with contextlib.redirect_stdout(io.StringIO()):   # its per-tensor progress lines
            tvmjs.dump_tensor_cache(tensors(), str(out_dir), encode_format="raw",
                                    meta_data={"params": list(names)}, shard_cap_mb=shard_mb,
                                    show_progress=False)
