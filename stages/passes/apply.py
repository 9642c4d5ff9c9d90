"""passes: run a component's Relax module through pipeline.PASSES (stages/passes/pipeline.py)."""

from __future__ import annotations

from pathlib import Path

from stages.passes import pipeline
from stages.engine.progress import phase
from stages.engine.rule import Rule, Spec


def spec(r: Rule) -> Spec:
    """The imported module in; the module after this variant's pass list out."""
    kind = r.target["tvm"]["kind"]
    return r.spec({"module": r.out("import", "module")},
                  {"module": r.per_target / "module.json"},
                  {"component": r.base, "precision": r.precision, "target": r.target["tvm"],
                   **r.feat,
                   "passes": pipeline.steps(r.stage, r.base, kind, r.precision, r.features)},
                  modules=pipeline.modules(r.stage, r.base, kind, r.precision, r.features))


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import tvm

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    phase(f"passes:{cfg['component']}", " -> ".join(cfg["passes"]))
    with target:
        mod = pipeline.build("passes", cfg["component"], target, cfg["precision"],
                             tuple(cfg.get("features", ())))(mod)
    outputs["module"].write_text(tvm.ir.save_json(mod))
