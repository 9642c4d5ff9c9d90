"""schedule: give every PrimFunc its schedule for the target.

When configs/tuning/<model>/<target>/<component>/ holds a MetaSchedule database, its records
are applied (MetaScheduleApplyDatabase); the database files are inputs of this stage, so new
records rebuild this component alone. Records are kept per target: a record made for one target
never reaches another. Without a database a CPU build keeps the default (unscheduled) loops,
which LLVM compiles as they are. Tuning itself is `doit tune:<component>`, never this stage.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    databases = {n: p for n, p in inputs.items() if n.startswith("database_")}
    if not databases:
        shutil.copyfile(inputs["module"], outputs["module"])
        return
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    mod = tvm.ir.load_json(inputs["module"].read_text())
    target = tvm.target.Target(cfg["target"])
    db = ms.database.JSONDatabase(
        path_workload=str(databases["database_workload.json"]),
        path_tuning_record=str(databases["database_tuning_record.json"]),
        allow_missing=False)
    with target, db:
        mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    outputs["module"].write_text(tvm.ir.save_json(mod))
