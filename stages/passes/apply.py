"""passes: run a component's Relax module through pipeline.PASSES (stages/passes/pipeline.py).

The steps are those of the variant's precision and GPU features, plus the model's own pass
features (config.weight_features: model.weights = "int8" adds the int8_weights pass).
"""

from __future__ import annotations

from pathlib import Path

from stages.engine.config import weight_features
from stages.engine.progress import phase
from stages.engine.rule import Rule, Spec
from stages.passes import pipeline


def spec(r: Rule) -> Spec:
    """The imported module in; the module after this variant's pass list out."""
    kind = r.target["tvm"]["kind"]
    model_features = weight_features(r.cfg.model, r.base)
    features = r.features + model_features
    return r.spec({"module": r.out("import", "module")},
                  {"module": r.per_target / "module.json"},
                  {"component": r.base, "precision": r.precision, "target": r.target["tvm"],
                   **r.feat,
                   **({"model_features": list(model_features)} if model_features else {}),
                   "passes": pipeline.steps(r.stage, r.base, kind, r.precision, features)},
                  modules=pipeline.modules(r.stage, r.base, kind, r.precision, features))


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import tvm

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    phase(f"passes:{cfg['component']}", " -> ".join(cfg["passes"]))
    features = tuple(cfg.get("features", ())) + tuple(cfg.get("model_features", ()))
    with target:
        mod = pipeline.build("passes", cfg["component"], target, cfg["precision"], features)(mod)
    outputs["module"].write_text(tvm.ir.save_json(mod))
