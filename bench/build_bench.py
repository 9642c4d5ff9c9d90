"""Build-cost benchmark for the tiny model: cold, no-op, pass-edit and cache-restore wall times.

Each scenario runs `doit build` in a fresh checkout under a temp dir, as a user would:
    cold           empty cache/, nothing built
    no-op          right after the cold build
    pass-edit      a real edit of the UNet-only pass (the unet rebuilds from `passes` on)
    cache-restore  a fresh clone with a copy of the cold build's cache/
Prints a table with each time as a ratio to cold, and writes bench/results/build_bench.json.

    .venv/bin/python bench/build_bench.py [--model tiny] [--target llvm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import checkout, keep_unit_scales  # noqa: E402  (one way for both)


def timed_build(ws: Path, model: str, target: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "doit", "build", f"model={model}",
                           f"target={target}"], cwd=ws, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed in {ws}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("stages:")][-1]
    return seconds, line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--target", default="llvm")
    args = ap.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws = checkout(Path(tmp) / "a")
        results["cold"] = timed_build(ws, args.model, args.target)
        results["no-op"] = timed_build(ws, args.model, args.target)
        clone = checkout(Path(tmp) / "b")
        shutil.copytree(ws / "cache", clone / "cache")
        results["cache-restore"] = timed_build(clone, args.model, args.target)
        keep_unit_scales(ws)
        results["pass-edit"] = timed_build(ws, args.model, args.target)

    cold = results["cold"][0]
    print(f"{'scenario':<14} {'seconds':>8} {'x cold':>7}  summary")
    for name in ("cold", "no-op", "pass-edit", "cache-restore"):
        seconds, line = results[name]
        print(f"{name:<14} {seconds:8.2f} {seconds / cold:7.3f}  {line}")
    out = ROOT / "bench" / "results" / "build_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": args.model, "target": args.target, "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "scenarios": {k: {"seconds": round(v[0], 3), "ratio_to_cold": round(v[0] / cold, 4),
                          "summary": v[1]} for k, v in results.items()},
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
