"""lora: the build's LoRA files (`doit build lora=FILE[:SCALE],...`) as one low-rank update per
weight, for each component they change.

It runs only when the build names LoRAs, once per model, before any component is emitted: a
LoRA that does not fit the model (a key that names no weight, a shape that differs) stops the
build with one line naming that key, while nothing of dist/ has been touched. Its outputs are
small (the factors, not the merged weights): emit adds `up @ down` to each weight as it writes
the parameter shards, so a new LoRA or scale rebuilds only emit (shards and manifest), verify
and package; every stage that compiles a kernel stays up to date. A component no LoRA touches
gets no file here, and its emit is not even re-run.
"""

from __future__ import annotations

from pathlib import Path

from stages.engine.rule import Rule, Spec
from stages.runtime import lora


def spec(r: Rule) -> Spec:
    """The LoRA files and the weights of the components they change in; one factors file per
    such component out."""
    touched = touched_components(r.cfg)
    inputs = {f"lora{i}": item.path for i, item in enumerate(r.cfg.loras)}
    inputs.update({f"{c}.safetensors": r.out("weights", "weights", c) for c in touched})
    return r.spec(inputs, {c: r.common / f"{c}.safetensors" for c in touched},
                  {"scales": [item.scale for item in r.cfg.loras], "components": touched})


def touched_components(cfg) -> list[str]:
    """The components any of the build's LoRAs changes (read from the files' headers)."""
    found = set()
    for item in cfg.loras:
        found |= lora.components_of(item.path)
    return sorted(found)


def loras_of(cfg, component: str) -> list[lora.Lora]:
    """The build's LoRAs that change `component` (a base name: unet, text_encoder)."""
    return [item for item in cfg.loras if component in lora.components_of(item.path)]


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    from safetensors.numpy import save_file

    files = [lora.Lora(inputs[f"lora{i}"], scale) for i, scale in enumerate(cfg["scales"])]
    for component in cfg["components"]:
        tensors, _ = lora.header(inputs[f"{component}.safetensors"])
        shapes = {k: tuple(v["shape"]) for k, v in tensors.items()}
        merged = lora.combine([lora.factors(f, component, shapes) for f in files])
        save_file({f"{key}{part}": value for key, (up, down) in merged.items()
                   for part, value in ((".up", up), (".down", down))},
                  str(outputs[component]))
