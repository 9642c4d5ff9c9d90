"""`doit tune:<component>`: MetaSchedule tuning into the per-target database that builds apply.

The database lives in configs/tuning/<model>/<target>/<component>/ (MetaSchedule's
database_workload.json + database_tuning_record.json), committed with the repo so that CI and
every clone reuse it; the `schedule` stage takes those files as inputs. Tuning is resumable:
kernels that already have a record are skipped, and records are appended as they are measured,
so Ctrl-C keeps them, and ends every worker process it started (stages/engine/children.py).
Never run by `doit build`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from stages.engine import config, dag
from stages.engine.children import ending_children
from stages.engine.config import Config
from stages.schedule import tuning_dir


def _cost(task) -> float:
    """Estimated FLOPs of one call of a task's kernel, times the calls per run."""
    from tvm.s_tir.analysis import estimate_tir_flops

    try:
        return float(estimate_tir_flops(task.dispatched[0])) * task.weight
    except Exception:  # kernels without a FLOP count (reshapes) go last
        return 0.0


def _progress(component: str, tasks: list, total: int):
    """A MeasureCallback printing trials done of total, tasks with a valid measurement, the best
    GFLOP/s of each task so far and an estimate of the time left."""
    import time

    from tvm.s_tir import meta_schedule as ms
    from tvm.ir.utils import derived_object

    flops = [_cost(t) / t.weight for t in tasks]
    names = [t.task_name for t in tasks]

    @derived_object
    class Progress(ms.measure_callback.PyMeasureCallback):
        def __init__(self):
            self.done, self.start, self.best = 0, time.monotonic(), {}

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
                  runner_results):
            self.done += len(runner_results)
            for result in runner_results:
                if result.error_msg is None and result.run_secs:
                    secs = sum(float(s) for s in result.run_secs) / len(result.run_secs)
                    gflops = flops[task_id] / secs / 1e9
                    self.best[task_id] = max(self.best.get(task_id, 0.0), gflops)
            elapsed = time.monotonic() - self.start
            left = elapsed / self.done * max(total - self.done, 0) if self.done else 0.0
            best = ", ".join(f"{names[i]} {g:.1f}" for i, g in sorted(self.best.items()))
            print(f"    tune:{component}: trials {self.done}/{total}, tasks measured "
                  f"{len(self.best)}/{len(tasks)}, {elapsed:.0f} s, about {left:.0f} s left; "
                  f"best GFLOP/s: {best or '-'}", file=sys.stderr, flush=True)

    return Progress()


def _runner(settings: dict):
    """Measure locally, or on the devices registered with an RPC tracker under a key, so that a
    fleet of machines shares one tuning run (`rpc_tracker = "host:port"`, `rpc_key`)."""
    from tvm.s_tir import meta_schedule as ms

    if "rpc_tracker" not in settings:
        return ms.runner.LocalRunner(timeout_sec=settings["runner_timeout_s"])
    host, _, port = settings["rpc_tracker"].rpartition(":")  # checked by stages.engine.config
    return ms.runner.RPCRunner(ms.runner.RPCConfig(
        tracker_host=host, tracker_port=int(port), tracker_key=settings["rpc_key"],
        session_timeout_sec=settings["runner_timeout_s"]))


def tune(cfg: Config, component: str, module_path: Path, trials: int, top: int) -> int:
    """Tune the `top` costliest kernels of a component (0 = all) that have no record yet,
    with at most `trials` measurements in all; return the number of kernels tuned."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    settings = cfg.target["tune"]
    target_json = dict(cfg.target["target"]["tvm"])
    if target_json["kind"] == "llvm":
        target_json.setdefault("num-cores", os.cpu_count())
    target = tvm.target.Target(target_json)
    mod = tvm.ir.load_json(module_path.read_text())
    tasks = sorted(ms.relax_integration.extract_tasks(mod, target), key=_cost, reverse=True)
    tasks = [t for t in tasks if _cost(t) > 0]
    chosen = tasks[:top] if top > 0 else tasks

    out = tuning_dir(config.ROOT, cfg, component)
    out.mkdir(parents=True, exist_ok=True)
    database = ms.database.JSONDatabase(
        path_workload=str(out / "database_workload.json"),
        path_tuning_record=str(out / "database_tuning_record.json"))
    todo = [t for t in chosen
            if database.query_tuning_record(t.dispatched[0], target, "main") is None]
    print(f"tune:{component}: {len(tasks)} kernels with FLOPs, {len(chosen)} selected, "
          f"{len(chosen) - len(todo)} already tuned, {len(todo)} to tune "
          f"(budget {trials} trials)", file=sys.stderr)
    if not todo or trials <= 0:
        return 0

    work_dir = dag.BUILD / cfg.model_name / cfg.target_name / component / "tune-logs"
    work_dir.mkdir(parents=True, exist_ok=True)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        todo, work_dir=str(work_dir), num_threads=target_json.get("num-cores", "physical"))
    ms.tune.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=str(work_dir),
        max_trials_global=trials,
        max_trials_per_task=max(settings["trials_per_iter"], trials // len(todo)),
        num_trials_per_iter=settings["trials_per_iter"],
        builder=ms.builder.LocalBuilder(timeout_sec=settings["builder_timeout_s"]),
        runner=_runner(settings),
        database=database,
        measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                           _progress(component, todo, trials)])
    return len(todo)


def doit_action(model: str, target: str, path: str | None, component: str, trials: int,
                top: int) -> None:
    cfg = config.load(model, target, path)
    module = dag.spec(cfg, "passes", component).outputs["module"]
    trials = cfg.target["tune"]["trials"] if trials < 0 else trials
    top = cfg.target["tune"]["top"] if top < 0 else top
    # the builder's and runner's worker processes end with it, however it ends
    with ending_children(f"tune:{component}", "the records measured so far are kept"):
        tune(cfg, component, module, trials, top)
