"""checkpoint: a local model's weight files checked against its architecture, before anything.

It runs first in `doit build path=DIR` (the weights stages take its output), so a checkpoint
that does not load or does not fit stops the build with one line naming the file and the fix
while nothing is built, cached or written to dist/. For each component: its config.json against
the model config (a TOML's overrides), every tensor the architecture has with its shape and
nothing else (stages/runtime/weight_files.py), then every value finite. The output records what
was found, and which file variant ("fp16") the weights stage loads.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.engine.progress import Bar
from stages.engine.rule import Rule, Spec, model_files
from stages.runtime.components import CLASSES

# The diffusers subfolder each component's weights come from in a local model directory.
SUBFOLDER = {component: sub for component, (_, _, sub) in CLASSES.items()}


def spec(r: Rule) -> Spec:
    """Every weight and config file of the three subfolders in; checkpoint.json out."""
    model_dir = r.cfg.pretrained_path
    inputs = {f"{sub}/{name}": path for sub in SUBFOLDER.values()
              for name, path in model_files(model_dir / sub,
                                            (".json", ".safetensors", ".bin")).items()}
    return r.spec(inputs, {"checkpoint.json": r.common / "checkpoint.json"},
                  {"arch": {c: r.cfg.arch(c) for c in SUBFOLDER}})


def check_arch(actual: dict, arch: dict, where: str) -> None:
    """The directory's config.json says what the model config says, key by key (a key it
    leaves to the library's default is not compared)."""
    for key, want in arch.items():
        if key not in actual:
            continue
        have = actual[key]
        if isinstance(have, tuple):
            have = list(have)
        if have != want:
            raise ValueError(f"{where}: {key} = {have!r} but the model config says {want!r}; "
                             f"fix: make configs/models/<model>.toml match the checkpoint")


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    from stages.runtime import components, weight_files

    found = {}
    for component, sub in SUBFOLDER.items():
        twin = next((c for c in found if SUBFOLDER[c] == sub), None)
        if twin:   # the VAE's encoder and decoder: one folder, checked once
            found[component] = found[twin]
            continue
        folder = inputs[f"{sub}/config.json"].parent
        config = components.read_config(component, folder)
        check_arch(config, cfg["arch"][component], f"{folder}/config.json")
        files, variant = weight_files.weight_files(folder)
        weight_files.check_fit(component, config, files)
        count, dtypes = 0, set()
        bar = Bar(f"checkpoint:{component}", len(files), " files")
        for f in files:
            for name, tensor in weight_files.tensors(f):
                weight_files.check_finite(name, tensor, f)
                count += tensor.numel()
                dtypes.add(str(tensor.dtype).removeprefix("torch."))
            bar.update()
        found[component] = {"files": [f.name for f in files], "variant": variant,
                            "parameters": count, "dtypes": sorted(dtypes)}
    outputs["checkpoint.json"].write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
