"""capture: torch.export of a component's thin wrapper at the configured shapes -> graph.pt2.

The wrapper (stages/runtime/components.py) fixes the export boundary; the shapes come from the config
slice (CFG batch for the UNet), so a shape change re-captures.
"""

from __future__ import annotations

from pathlib import Path

from stages.runtime import components
from stages.engine.progress import phase
from stages.engine.rule import Rule, Spec


def spec(r: Rule) -> Spec:
    return r.spec({"config": r.out("weights", "config"), "weights": r.out("weights", "weights")},
                  {"graph": r.common / "graph.pt2"},
                  {"component": r.base, "inputs": r.cfg.input_specs(r.component)})


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import torch

    component = cfg["component"]
    module = components.load(component, inputs["weights"].parent)
    wrapped = components.wrapper(component, module)
    example = components.example_inputs(cfg["inputs"], seed=0, vocab_size=1)
    args = tuple(torch.from_numpy(example[name]) for name in cfg["inputs"])
    phase(f"capture:{component}", "torch.export.export "
          + "x".join(map(str, next(iter(cfg["inputs"].values()))[0])))
    with torch.no_grad():
        exported = torch.export.export(wrapped, args)
    torch.export.save(exported, str(outputs["graph"]))
