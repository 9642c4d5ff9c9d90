"""Cold build cost per stage and component: wall time and peak RSS of each task on its own.

Every task of a model + target build runs as its own `doit <task>` process, in DAG order, in a
checkout under --workspace (fresh, with an empty cache/, unless it already exists: then it
measures what is left to build there, so llvm and webgpu runs can share the weights, capture
and import of one workspace). Peak RSS comes from the kernel's accounting of that process
tree (os.wait4), so it is per task, not the running maximum of one long doit process; CPU
seconds (user + system, all threads) are recorded beside wall seconds, since they are less
disturbed by other work on the machine.

    .venv/bin/python bench/stage_cost.py --model sd-v1-5 --target llvm --workspace /tmp/ws
    .venv/bin/python bench/stage_cost.py --model sd-v1-5 --target webgpu --until emit \
        --workspace /tmp/ws

Writes bench/results/stage_cost_<model>_<target>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from conftest import checkout  # noqa: E402  (one way to make a clean checkout)

from stages.engine import config, dag  # noqa: E402

SUMMARY = re.compile(r"^stages: (\d+) built, (\d+) restored, (\d+) up-to-date$", re.M)


def run_task(ws: Path, task: str, model: str, target: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "doit", task, f"model={model}",
                             f"target={target}"], cwd=ws, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{task} failed in {ws}:\n{out[-4000:]}")
    built, restored, uptodate = (int(n) for n in SUMMARY.findall(out)[-1])
    outcome = "built" if built else "restored" if restored else "up-to-date"
    return {"task": task, "seconds": round(seconds, 2),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": usage.ru_maxrss // 1024, "outcome": outcome}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--target", default="llvm")
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--until", default=None,
                    help="stop after this component stage (e.g. emit: skip verify)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the measurements of tasks a previous run of this workspace built")
    args = ap.parse_args()
    out = ROOT / "bench" / "results" / f"stage_cost_{args.model}_{args.target}.json"
    before = {}
    if args.resume and out.is_file():
        before = {r["task"]: r for r in json.loads(out.read_text())["tasks"]
                  if r["outcome"] == "built"}

    ws = args.workspace
    if not ws.exists():
        ws.mkdir(parents=True)
        checkout(ws)
    cfg = config.load(args.model, args.target)
    specs = dag.all_specs(cfg)
    if args.until:
        cut = dag.COMPONENT_STAGES.index(args.until) + 1
        specs = [s for s in specs if s.stage not in dag.COMPONENT_STAGES[cut:]
                 and s.stage not in dag.FINAL_STAGES]
    rows = []
    for s in specs:
        row = run_task(ws, s.task, args.model, args.target)
        if row["outcome"] != "built" and s.task in before:
            row = before[s.task]   # built by the earlier run of this workspace
        rows.append(row)
        print(f"{row['task']:<28} {row['seconds']:8.1f} s {row['cpu_seconds']:8.1f} cpu-s "
              f"{row['peak_rss_mb']:7d} MB  "
              f"{row['outcome']}", flush=True)
    built = [r for r in rows if r["outcome"] == "built"]
    result = {
        "model": args.model, "target": args.target, "until": args.until,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "tasks": rows,
        "built_seconds": round(sum(r["seconds"] for r in built), 1),
        "built_cpu_seconds": round(sum(r["cpu_seconds"] for r in built), 1),
        "peak_rss_mb": max((r["peak_rss_mb"] for r in built), default=0),
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"built {len(built)} tasks in {result['built_seconds']} s, peak RSS "
          f"{result['peak_rss_mb']} MB -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
