"""CPU speed per component: compiled-untuned vs compiled-tuned (MetaSchedule) vs torch eager.

In a fresh checkout under a temp dir: `doit emit` (the untuned libraries are kept aside), then
`doit tune:<component>` with the given budget for every component, then `doit emit` again (the
params are the same bytes tuned or not). --tuned-already: the workspace's tuning records are
there already (a long tuning run done by `doit tune`); they are moved aside for the untuned
emit and put back.
All three variants of each component then run in this one process, on the same inputs, with
the same number of threads (torch.set_num_threads and TVM_NUM_THREADS), after a warm-up; the
figure is the median of --repeat runs. torch runs first for every component: TVM's thread pool
keeps spinning after a call and would steal the cores from torch. Prints a table and writes
bench/results/tune_bench_<model>.json.

    .venv/bin/python bench/tune_bench.py [--model tiny] [--trials 64] [--top 4] [--repeat 20]
    .venv/bin/python bench/tune_bench.py --model sd-v1-5 --trials 128 --top 12 --repeat 1 \
        --workspace /tmp/sd15 --tuned-already   # after `doit tune:<c> model=sd-v1-5` there
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from conftest import COMPONENTS, checkout  # noqa: E402


def doit(ws: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=ws, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"doit {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def median_ms(fn, repeat: int) -> float:
    if repeat > 1:   # NOTE: --repeat 1 (full size on CPU: minutes per call) skips the warm-up
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--trials", type=int, default=64,
                    help="MetaSchedule measurements per component; 0 = time untuned only")
    ap.add_argument("--top", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--workspace", type=Path, default=None,
                    help="a checkout to build and tune in (default: a fresh one in a temp dir)")
    ap.add_argument("--tuned-already", action="store_true",
                    help="the workspace holds the tuning records: time them, tune nothing")
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before the TVM runtime starts

    import torch
    import tvm

    from stages.engine import config
    from stages.runtime import components
    from stages.runtime.component import Component

    torch.set_num_threads(args.threads)
    cfg = config.load(args.model, "llvm")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws = args.workspace or checkout(Path(tmp) / "ws")
        dist = ws / "dist" / args.model / "llvm"
        untuned = Path(tmp) / "untuned"
        if args.trials:
            records = ws / "configs" / "tuning" / args.model / "llvm"
            aside = Path(tmp) / "records"
            if args.tuned_already:
                shutil.move(records, aside)
            doit(ws, "emit", f"model={args.model}", "target=llvm")
            for c in COMPONENTS:   # only the libraries: the params do not change with tuning
                (untuned / c).mkdir(parents=True)
                shutil.copy2(dist / c / f"{c}.so", untuned / c / f"{c}.so")
            if args.tuned_already:
                shutil.move(aside, records)
            else:
                for c in COMPONENTS:
                    doit(ws, f"tune:{c}", f"model={args.model}", "target=llvm", "--trials",
                         str(args.trials), "--top", str(args.top))
            doit(ws, "emit", f"model={args.model}", "target=llvm")
        else:   # untuned only, from what the workspace has emitted (no build: verify is slow)
            for c in COMPONENTS:
                doit(ws, f"emit:{c}", f"model={args.model}", "target=llvm")
            untuned = dist

        device = tvm.cpu()
        examples = {c: components.example_inputs(cfg.input_specs(c), 0,
                                                 cfg.model["text_encoder"]["vocab_size"])
                    for c in COMPONENTS}
        for c in COMPONENTS:  # NOTE: all torch runs before the first TVM call (see above)
            module = components.wrapper(c, components.load(c, ws / "build" / args.model / c
                                                           / "weights"))
            torch_args = [torch.from_numpy(examples[c][n]) for n in cfg.input_specs(c)]

            def torch_run():
                with torch.no_grad():
                    module(*torch_args)

            rows[c] = {"torch_eager_ms": median_ms(torch_run, args.repeat)}
            print(f"{c}: torch eager {rows[c]['torch_eager_ms']:.1f} ms", flush=True)
        for c in COMPONENTS:
            timings = rows[c]
            for name, lib_dir in (("untuned_ms", untuned / c), ("tuned_ms", dist / c))[
                    :2 if args.trials else 1]:
                compiled = Component(lib_dir / f"{c}.so", dist / c / "params",
                                     dist / c / "manifest.json", device)
                tvm_args = compiled.tensors(examples[c][n] for n in cfg.input_specs(c))
                timings[name] = median_ms(lambda: compiled.call(*tvm_args), args.repeat)
                print(f"{c}: {name} {timings[name]:.1f}", flush=True)
                del compiled   # full size: one copy of the UNet's params at a time

        for c in rows:   # kernels with a measured record (a failed one reads 1e10 s)
            db = ws / "configs" / "tuning" / args.model / "llvm" / c / "database_tuning_record.json"
            lines = db.read_text().splitlines() if db.is_file() else []
            rows[c]["tuned_kernels"] = len({json.loads(line)[0] for line in lines
                                            if max(json.loads(line)[1][1] or [1e10]) < 1e9})

    print(f"{'component':<14} {'torch ms':>9} {'untuned ms':>11} {'tuned ms':>9} "
          f"{'tuned/untuned':>14} {'torch/tuned':>12}")
    for c, t in rows.items():
        t.setdefault("tuned_ms", None)
        t["speedup_untuned_vs_torch"] = t["torch_eager_ms"] / t["untuned_ms"]
        if t["tuned_ms"] is None:
            print(f"{c:<14} {t['torch_eager_ms']:9.2f} {t['untuned_ms']:11.2f}  (not tuned)")
            continue
        t["speedup_tuned_vs_untuned"] = t["untuned_ms"] / t["tuned_ms"]
        t["speedup_tuned_vs_torch"] = t["torch_eager_ms"] / t["tuned_ms"]
        print(f"{c:<14} {t['torch_eager_ms']:9.2f} {t['untuned_ms']:11.2f} {t['tuned_ms']:9.2f} "
              f"{t['speedup_tuned_vs_untuned']:13.2f}x {t['speedup_tuned_vs_torch']:11.2f}x")
    out = ROOT / "bench" / "results" / f"tune_bench_{args.model}.json"
    out.write_text(json.dumps({
        "model": args.model, "threads": args.threads, "trials": args.trials, "top": args.top,
        "repeat": args.repeat, "machine": platform.machine(), "tuned_already": args.tuned_already,
        "components": rows,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
