"""No-op and pass-edit rebuild times of a built model, in an existing workspace.

    .venv/bin/python bench/rebuild_cost.py --model sd-v1-5 --target webgpu --task emit \
        --workspace /tmp/sd15

Times `doit <task> model=... target=...` three times: right after a build (no-op), after a real
edit of the UNet-only pass (the UNet variants rebuild from `passes` on), and after undoing the
edit (everything comes back from cache/). --task picks what to build up to (the full-size
webgpu build stops at `emit`: verifying it on a CPU WebGPU would take hours).
Writes bench/results/rebuild_cost_<model>_<target>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import keep_unit_scales  # noqa: E402  (the edit the tests make)

SUMMARY = re.compile(r"^stages: (\d+) built, (\d+) restored, (\d+) up-to-date$", re.M)


def timed(ws: Path, task: str, model: str, target: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "doit", task, f"model={model}",
                           f"target={target}"], cwd=ws, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"doit {task} failed in {ws}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {"seconds": round(seconds, 2), "summary": SUMMARY.findall(proc.stdout)[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--target", default="llvm")
    ap.add_argument("--task", default="build")
    ap.add_argument("--workspace", type=Path, required=True)
    args = ap.parse_args()
    ws = args.workspace
    pass_file = ws / "stages/passes/drop_unit_scale.py"
    original = pass_file.read_text()
    results = {"no-op": timed(ws, args.task, args.model, args.target)}
    try:
        keep_unit_scales(ws)
        results["pass-edit"] = timed(ws, args.task, args.model, args.target)
    finally:
        pass_file.write_text(original)
    results["undo-edit"] = timed(ws, args.task, args.model, args.target)
    for name, r in results.items():
        b, rs, u = r["summary"]
        r["summary"] = f"stages: {b} built, {rs} restored, {u} up-to-date"
        print(f"{name:<10} {r['seconds']:8.2f} s  {r['summary']}")
    out = ROOT / "bench" / "results" / f"rebuild_cost_{args.model}_{args.target}.json"
    out.write_text(json.dumps({"model": args.model, "target": args.target, "task": args.task,
                               "scenarios": results}, indent=1) + "\n")
    print(f"-> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
