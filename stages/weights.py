"""weights: one component's weights as safetensors plus its config.json.

init = "random" draws them from the config's seed (the embedded tiny model and full-size scale
runs); init = "pretrained" reads a local diffusers directory offline and checks that its
architecture is the one the model config declares. Either way the output has one format, so
every later stage reads the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.runtime import components
from stages.engine.progress import Bar
from stages.engine.rule import Rule, Spec, model_files


def _config_dict(module) -> dict:
    cfg = module.config
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def _check_arch(actual: dict, arch: dict, where: str) -> None:
    for key, want in arch.items():
        have = actual.get(key)
        if isinstance(have, tuple):
            have = list(have)
        if have != want:
            raise ValueError(f"{where}: {key} = {have!r} but the model config says {want!r}; "
                             f"fix: make configs/models/<model>.toml match the checkpoint")


# The diffusers subfolder each component's weights come from in a local model directory.
SUBFOLDER = {"text_encoder": "text_encoder", "unet": "unet", "vae_decoder": "vae"}


def spec(r: Rule) -> Spec:
    """A local model's weight files (none for seeded random init) in; safetensors out."""
    model_dir = r.cfg.pretrained_path
    inputs = (model_files(model_dir / SUBFOLDER[r.base], (".json", ".safetensors", ".bin"))
              if model_dir else {})
    mcfg = r.cfg.model["model"]
    return r.spec(inputs,
                  {"config": r.common / "config.json", "weights": r.common / "model.safetensors"},
                  {"component": r.component, "init": mcfg["init"], "seed": mcfg["seed"],
                   "arch": r.cfg.arch(r.component)})


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import torch
    from safetensors.torch import save_file

    component = cfg["component"]
    if cfg["init"] == "random":
        module = components.init_random(component, cfg["arch"], cfg["seed"])
    else:
        model_dir = next(iter(inputs.values())).parent
        _check_arch(components.read_config(component, model_dir), cfg["arch"],
                    f"{model_dir}/config.json")
        module = components.module_class(component).from_pretrained(
            str(model_dir), local_files_only=True, torch_dtype=torch.float32).eval()

    state = module.state_dict()
    bar = Bar(f"weights:{component}", len(state), " tensors")
    tensors, seen = {}, set()
    for name, tensor in state.items():
        t = tensor.detach().to(torch.float32).contiguous()
        # safetensors refuses tensors that share memory (tied weights): copy only those, so the
        # full-size UNet is not held twice (3.4 GB more peak RSS with a copy of everything)
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[name] = t
        bar.update()
    save_file(tensors, str(outputs["weights"]))
    outputs["config"].write_text(json.dumps(_config_dict(module), indent=1, sort_keys=True,
                                            default=list))
