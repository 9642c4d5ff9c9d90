"""`doit tune:<component>`: MetaSchedule tuning into the per-target database that builds apply.

The database lives in configs/tuning/<model>/<target>[/<mcpu>]/<component>/ (MetaSchedule's
database_workload.json + database_tuning_record.json), committed with the repo so that CI and
every clone reuse it; the `schedule` stage takes those files as inputs. Never run by `doit build`.

A record replaces the kernel's default schedule, so it must beat it: on llvm each kernel's default
schedule (stages/passes/cpu_default_schedule.py) is measured by the same runner and committed as
one more record, and the build applies the fastest record, MetaSchedule's or the default's (the
SD v1.5 records tuned before the CPU schedule made the UNet 0.91x and the VAE decoder 0.79x the
default build). That measurement also sets the kernel's runner timeout: a candidate may take
SLOWEST_CANDIDATE times the default before it is cut off, so the VAE decoder's two largest
convolutions (4-6 s by default on AVX2) are measured where a fixed 30 s cut off every candidate,
and the other kernels keep the configured timeout.

Tuning is resumable: a kernel counts as tuned once its default's record is in (after its
search); records are appended as they are measured, so Ctrl-C keeps them, and ends every worker
process it started (stages/engine/children.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from stages.engine import config, dag
from stages.engine.children import ending_children
from stages.engine.config import Config
from stages.schedule import tuning_dir

SLOWEST_CANDIDATE = 4.0  # x the default schedule's time: the slowest candidate still measured


def _cost(task) -> float:
    """Estimated FLOPs of one call of a task's kernel, times the calls per run."""
    from tvm.s_tir.analysis import estimate_tir_flops

    try:
        return float(estimate_tir_flops(task.dispatched[0])) * task.weight
    except Exception:  # kernels without a FLOP count (reshapes) go last
        return 0.0


def _progress(component: str, tasks: list, total: int):
    """A MeasureCallback printing trials done of total, tasks with a valid measurement, the best
    GFLOP/s of each task so far and an estimate of the time left; and `searching(i)`, which says
    that tasks[i] is the one now searched (each search numbers its own task 0)."""
    import time

    from tvm.s_tir import meta_schedule as ms
    from tvm.ir.utils import derived_object

    flops = [_cost(t) / t.weight for t in tasks]
    names = [t.task_name for t in tasks]
    now = [0]

    def searching(index: int) -> None:
        now[0] = index

    @derived_object
    class Progress(ms.measure_callback.PyMeasureCallback):
        def __init__(self):
            self.done, self.start, self.best = 0, time.monotonic(), {}

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
                  runner_results):
            self.done += len(runner_results)
            index = now[0] + task_id
            for result in runner_results:
                if result.error_msg is None and result.run_secs:
                    secs = sum(float(s) for s in result.run_secs) / len(result.run_secs)
                    gflops = flops[index] / secs / 1e9
                    self.best[index] = max(self.best.get(index, 0.0), gflops)
            elapsed = time.monotonic() - self.start
            left = elapsed / self.done * max(total - self.done, 0) if self.done else 0.0
            best = ", ".join(f"{names[i]} {g:.1f}" for i, g in sorted(self.best.items()))
            print(f"    tune:{component}: trials {self.done}/{total}, tasks measured "
                  f"{len(self.best)}/{len(tasks)}, {elapsed:.0f} s, about {left:.0f} s left; "
                  f"best GFLOP/s: {best or '-'}", file=sys.stderr, flush=True)

    return Progress(), searching


def _runner(settings: dict, timeout_s: float):
    """Measure locally, or on the devices registered with an RPC tracker under a key, so that a
    fleet of machines shares one tuning run (`rpc_tracker = "host:port"`, `rpc_key`)."""
    from tvm.s_tir import meta_schedule as ms

    if "rpc_tracker" not in settings:
        return ms.runner.LocalRunner(timeout_sec=timeout_s)
    host, _, port = settings["rpc_tracker"].rpartition(":")  # checked by stages.engine.config
    return ms.runner.RPCRunner(ms.runner.RPCConfig(
        tracker_host=host, tracker_port=int(port), tracker_key=settings["rpc_key"],
        session_timeout_sec=int(timeout_s)))


def _trace_key(trace) -> str:
    """A trace as text: its instructions and decisions, the same for a trace read back."""
    return str(trace.as_json(remove_postproc=True))


class Default:
    """A kernel's default schedule as a tuning record: measured, then committed after the
    kernel's search, which marks the kernel tuned."""

    def __init__(self, task, target):
        from tvm.s_tir import meta_schedule as ms

        from stages.passes import cpu_default_schedule

        self.func = task.dispatched[0]["main"]
        self.mod = task.dispatched[0]
        self.target = target
        sch = (cpu_default_schedule.schedule_of(self.func, target)
               if target.kind.name == "llvm" else None)
        self.trace = sch.trace if sch is not None else None
        self.scheduled = sch.mod if sch is not None else None
        self.args_info = ms.arg_info.ArgInfo.from_prim_func(self.func)
        self.run_secs = None

    def committed(self, database) -> bool:
        """Is the kernel tuned: its default's record in (or, without a default schedule, any)?"""
        if not database.has_workload(self.mod):
            return False
        records = database.get_top_k(database.commit_workload(self.mod), 1 << 20)
        if self.trace is None:
            return bool(records)
        key = _trace_key(self.trace)
        return any(_trace_key(r.trace) == key for r in records)

    def measure(self, builder, runner) -> float | None:
        """Seconds of one call of the default schedule (the runner's mean), None if it failed."""
        from tvm.s_tir import meta_schedule as ms

        if self.trace is None:
            return None
        (built,) = builder.build([ms.builder.BuilderInput(self.scheduled, self.target)])
        if built.error_msg is not None:
            return None
        (future,) = runner.run([ms.runner.RunnerInput(built.artifact_path, "cpu",  # llvm only
                                                      self.args_info)])
        result = future.result()
        if result.error_msg is not None or not result.run_secs:
            return None
        self.run_secs = [float(getattr(s, "value", s)) for s in result.run_secs]
        return sum(self.run_secs) / len(self.run_secs)

    def commit(self, database) -> None:
        from tvm.s_tir import meta_schedule as ms

        if self.trace is not None and self.run_secs is not None:
            database.commit_tuning_record(ms.database.TuningRecord(
                self.trace, database.commit_workload(self.mod), self.run_secs, self.target,
                self.args_info))


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
    # kernels written with their own loops (attention) are no search space: not tuned
    tasks = [t for t in tasks if _cost(t) > 0
             and not t.dispatched[0]["main"].attrs.get("tirx.is_scheduled", False)]
    chosen = tasks[:top] if top > 0 else tasks

    out = tuning_dir(config.ROOT, cfg, component)
    out.mkdir(parents=True, exist_ok=True)
    database = ms.database.JSONDatabase(
        path_workload=str(out / "database_workload.json"),
        path_tuning_record=str(out / "database_tuning_record.json"))
    defaults = {id(t): Default(t, target) for t in chosen}
    todo = [t for t in chosen if not defaults[id(t)].committed(database)]
    print(f"tune:{component}: {len(tasks)} kernels with FLOPs, {len(chosen)} selected, "
          f"{len(chosen) - len(todo)} already tuned, {len(todo)} to tune "
          f"(budget {trials} trials)", file=sys.stderr)
    if not todo or trials <= 0:
        return 0

    work_dir = dag.BUILD / cfg.model_name / cfg.target_name / component / "tune-logs"
    work_dir.mkdir(parents=True, exist_ok=True)
    builder = ms.builder.LocalBuilder(timeout_sec=settings["builder_timeout_s"])
    per_task = max(settings["trials_per_iter"], trials // len(todo))
    progress, searching = _progress(component, todo, per_task * len(todo))
    for index, task in enumerate(todo):   # one search each: each its own runner timeout
        searching(index)
        default = defaults[id(task)]
        timeout = settings["runner_timeout_s"]
        secs = default.measure(builder, _runner(settings, timeout * SLOWEST_CANDIDATE))
        if secs is not None:   # the runner calls a kernel 4 times (MetaSchedule's evaluator)
            timeout = max(timeout, 4 * SLOWEST_CANDIDATE * secs + 10)
        print(f"tune:{component}: {task.task_name}: default schedule "
              f"{'%.3f ms' % (secs * 1e3) if secs is not None else 'not measured'}, "
              f"runner timeout {timeout:.0f} s", file=sys.stderr, flush=True)
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            [task], work_dir=str(work_dir),
            num_threads=target_json.get("num-cores", "physical"))
        ms.tune.tune_tasks(
            tasks=contexts, task_weights=weights, work_dir=str(work_dir),
            max_trials_global=per_task, max_trials_per_task=per_task,
            num_trials_per_iter=settings["trials_per_iter"],
            builder=builder, runner=_runner(settings, timeout), database=database,
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                               progress])
        default.commit(database)
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
