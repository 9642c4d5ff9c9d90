"""passes: run a component's Relax module through pipeline.PASSES (stages/passes/pipeline.py)."""

from __future__ import annotations

from pathlib import Path

from stages.passes import pipeline
from stages.progress import phase


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import tvm

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    phase(f"passes:{cfg['component']}", " -> ".join(cfg["passes"]))
    with target:
        mod = pipeline.build("passes", cfg["component"], target, cfg["precision"],
                             tuple(cfg.get("features", ())))(mod)
    outputs["module"].write_text(tvm.ir.save_json(mod))
