"""weights: one component's weights as safetensors plus its config.json.

init = "random" draws them from the config's seed (the embedded tiny model and full-size scale
runs); init = "pretrained" reads a local diffusers directory offline, after the checkpoint
stage has checked its files against the architecture. Either way the output has one format, so
every later stage reads the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.checkpoint import SUBFOLDER
from stages.engine.progress import Bar
from stages.engine.rule import Rule, Spec, model_files
from stages.runtime import components, weight_files


def _config_dict(module) -> dict:
    cfg = module.config
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def spec(r: Rule) -> Spec:
    """A local model's weight files and their check (none for seeded random init) in;
    safetensors out."""
    model_dir = r.cfg.pretrained_path
    inputs = (model_files(model_dir / SUBFOLDER[r.base], (".json", ".safetensors", ".bin"))
              | {"checkpoint.json": r.out("checkpoint", "checkpoint.json", "model")}
              if model_dir else {})
    mcfg = r.cfg.model["model"]
    return r.spec(inputs,
                  {"config": r.common / "config.json", "weights": r.common / "model.safetensors"},
                  {"component": r.component, "init": mcfg["init"], "seed": mcfg["seed"],
                   "arch": r.cfg.arch(r.component)})


def _load_pretrained(component: str, model_dir: Path, variant: str | None):
    """The component from a local model's subfolder (checked by stages/checkpoint.py)."""
    import diffusers
    import torch
    import transformers

    # NOTE: the checkpoint stage said what matters; the loaders' own warnings would repeat it
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    module, info = components.module_class(component).from_pretrained(
        str(model_dir), local_files_only=True, torch_dtype=torch.float32, variant=variant,
        output_loading_info=True)
    left = [k for key in ("missing_keys", "unexpected_keys", "mismatched_keys")
            for k in info.get(key, ()) if not weight_files.IGNORED.search(str(k))]
    if left:
        raise ValueError(f"{model_dir}: the loader did not place {left[:3]}; fix: use the "
                         f"config.json that came with these weights")
    return module.eval()


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import torch
    from safetensors.torch import save_file

    component = cfg["component"]
    if cfg["init"] == "random":
        module = components.init_random(component, cfg["arch"], cfg["seed"])
    else:
        checked = json.loads(inputs["checkpoint.json"].read_text())[component]
        model_dir = inputs["config.json"].parent
        module = _load_pretrained(component, model_dir, checked["variant"])

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
