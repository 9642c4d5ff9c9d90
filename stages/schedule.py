"""schedule: give every PrimFunc its schedule for the target.

First, when configs/tuning/<model>/<target>[/<mcpu>]/<component>/ holds a MetaSchedule database, its
records are applied (MetaScheduleApplyDatabase); the database files are inputs of this stage,
so new records rebuild this component alone. Records are kept per target: a record made for one
target never reaches another. Then pipeline.SCHEDULE runs: default schedules for the kernels
without a record (dlight rules: gpu_default_schedule.py, cpu_default_schedule.py), and the
target's limit checks. Tuning itself is `doit tune:<component>`, never this stage; on llvm it
records each tuned kernel's default schedule too, so the record applied here is never slower
than the default.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stages.passes import pipeline
from stages.engine.progress import phase
from stages.engine.rule import Rule, Spec


def tuning_dir(root: Path, cfg, component: str) -> Path:
    """configs/tuning/<model>/<target>[/<mcpu>]/<component>/: the records this stage applies
    and `doit tune` (stages/passes/tune.py) writes. A target that names its instruction set
    (llvm's mcpu, stages/engine/host_cpu.py) keeps records per set: a schedule measured with
    AVX2's 16-lane tiles never reaches an AVX-512 machine, whose own default is 32 lanes."""
    base = root / "configs" / "tuning" / cfg.model_name / cfg.target_name
    mcpu = cfg.target["target"]["tvm"].get("mcpu")
    return (base / mcpu if mcpu else base) / component


def spec(r: Rule) -> Spec:
    """The module after its passes, and the committed tuning records of this model, target and
    component (configs/tuning/), in; the scheduled module out."""
    kind = r.target["tvm"]["kind"]
    db = tuning_dir(r.root, r.cfg, r.component)
    inputs = {"module": r.out("passes", "module")}
    inputs.update({p.name: p for p in sorted(db.glob("database_*.json"))} if db.is_dir() else {})
    return r.spec(inputs, {"module": r.per_target / "module.json"},
                  {"component": r.base, "precision": r.precision, "target": r.target["tvm"],
                   **r.binding_limit, **r.feat,
                   "passes": pipeline.steps(r.stage, r.base, kind, r.precision, r.features)},
                  modules=pipeline.modules(r.stage, r.base, kind, r.precision, r.features))


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    databases = {n: p for n, p in inputs.items() if n.startswith("database_")}
    if not databases and not cfg["passes"]:
        shutil.copyfile(inputs["module"], outputs["module"])
        return
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    with target:
        if databases:
            with ms.database.JSONDatabase(
                    path_workload=str(databases["database_workload.json"]),
                    path_tuning_record=str(databases["database_tuning_record.json"]),
                    allow_missing=False):
                mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        if cfg["passes"]:
            phase(f"schedule:{cfg['component']}", " -> ".join(cfg["passes"]))
            mod = pipeline.build("schedule", cfg["component"], target, cfg["precision"],
                                  tuple(cfg.get("features", ())))(mod)
    outputs["module"].write_text(tvm.ir.save_json(mod))
