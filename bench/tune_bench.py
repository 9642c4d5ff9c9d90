"""CPU speed per component: compiled with default schedules vs with tuning records vs torch eager.

In a checkout (a fresh one under a temp dir, or --workspace): `doit emit` with the workspace's
tuning records moved aside, so that every kernel runs the default CPU schedule
(stages/passes/cpu_default_schedule.py); the records put back, `doit tune:<component>` with the
given budget for each component (--trials 0: none, the committed records only), and `doit emit`
again (the params are the same bytes whatever the schedule). The variants of each component then
run in this one process, on the same inputs, with the same number of threads (torch.set_num_threads
and TVM_NUM_THREADS), after a warm-up; the default and tuned libraries in turn, and each figure is
the median of --repeat runs. Only components with records for this host's instruction set have a
tuned figure. torch runs first for every component: TVM's thread pool keeps spinning after a call
and would steal the cores from torch. Prints a table and writes
bench/results/tune_bench_<model>_<mcpu>.json (the llvm target's x86-64 level: AVX2 and AVX-512
hosts are tabled apart).

    .venv/bin/python bench/tune_bench.py [--model tiny] [--trials 64] [--top 4] [--repeat 20]
    .venv/bin/python bench/tune_bench.py --model sd-v1-5 --trials 0 --repeat 3 \
        --workspace /tmp/sd15   # after `doit build model=sd-v1-5 target=llvm` there
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
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
    return medians_ms([fn], repeat)[0]


def medians_ms(fns, repeat: int) -> list[float]:
    """The median time of each of `fns`, run in turn, `repeat` rounds: a variant's figure and
    its neighbour's share the host's slow and fast minutes (a shared 2-core host ran one
    library 1.34x slower in one minute than in the next)."""
    if repeat > 1:   # NOTE: --repeat 1 (full size on CPU: minutes per call) skips the warm-up
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) * 1e3 for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--trials", type=int, default=64,
                    help="MetaSchedule measurements per component; 0 = the records there are only")
    ap.add_argument("--top", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--workspace", type=Path, default=None,
                    help="a checkout to build and tune in (default: a fresh one in a temp dir)")
    args = ap.parse_args()
    # a plain `kill` ends the run through the finally blocks too: the workspace's records are
    # moved aside while the default build runs and must come back (a killed run left them out)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before the TVM runtime starts

    import torch
    import tvm

    from stages.engine import config
    from stages.runtime import components
    from stages.schedule import tuning_dir
    from stages.runtime.component import Component

    torch.set_num_threads(args.threads)
    cfg = config.load(args.model, "llvm")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws = args.workspace or checkout(Path(tmp) / "ws")
        dist = ws / "dist" / args.model / "llvm"
        records = ws / "configs" / "tuning" / args.model / "llvm"
        default, aside = Path(tmp) / "default", Path(tmp) / "records"
        if records.is_dir():   # every kernel on its default schedule
            shutil.move(records, aside)
        try:
            doit(ws, "emit", f"model={args.model}", "target=llvm")
        finally:   # NOTE: the temp dir goes, the workspace's records must not go with it
            if aside.is_dir():
                shutil.move(aside, records)
        for c in COMPONENTS:   # only the libraries: the params do not change with the schedule
            (default / c).mkdir(parents=True)
            shutil.copy2(dist / c / f"{c}.so", default / c / f"{c}.so")
        if args.trials:
            for c in COMPONENTS:
                doit(ws, f"tune:{c}", f"model={args.model}", "target=llvm", "--trials",
                     str(args.trials), "--top", str(args.top))
        # a component is tuned where this instruction set has records for it (the directory
        # may hold only another level's: those do not apply to this build)
        record_files = {c: tuning_dir(ws, cfg, c) / "database_tuning_record.json"
                        for c in COMPONENTS}
        tuned = [c for c, db in record_files.items() if db.is_file()]
        if tuned:
            doit(ws, "emit", f"model={args.model}", "target=llvm")

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
        for c in COMPONENTS:   # default and tuned libraries in turn, on the same inputs
            variants = {"default_ms": default / c}
            if c in tuned:
                variants["tuned_ms"] = dist / c
            compiled = [Component(lib_dir / f"{c}.so", dist / c / "params",
                                  dist / c / "manifest.json", device)
                        for lib_dir in variants.values()]
            tvm_args = compiled[0].tensors(examples[c][n] for n in cfg.input_specs(c))
            figures = medians_ms([lambda m=m: m.call(*tvm_args) for m in compiled], args.repeat)
            for name, ms in zip(variants, figures):
                rows[c][name] = ms
                print(f"{c}: {name} {ms:.1f}", flush=True)
            del compiled

        for c in rows:   # kernels with a measured record (a failed one reads 1e10 s)
            db = record_files[c]
            lines = db.read_text().splitlines() if db.is_file() else []
            rows[c]["tuned_kernels"] = len({json.loads(line)[0] for line in lines
                                            if max(json.loads(line)[1][1] or [1e10]) < 1e9})

    print(f"{'component':<14} {'torch ms':>9} {'default ms':>11} {'tuned ms':>9} "
          f"{'default/tuned':>14} {'torch/tuned':>12}")
    for c, t in rows.items():
        t.setdefault("tuned_ms", None)
        t["speedup_default_vs_torch"] = t["torch_eager_ms"] / t["default_ms"]
        if t["tuned_ms"] is None:
            print(f"{c:<14} {t['torch_eager_ms']:9.2f} {t['default_ms']:11.2f}  (no records)")
            continue
        t["speedup_tuned_vs_default"] = t["default_ms"] / t["tuned_ms"]
        t["speedup_tuned_vs_torch"] = t["torch_eager_ms"] / t["tuned_ms"]
        print(f"{c:<14} {t['torch_eager_ms']:9.2f} {t['default_ms']:11.2f} {t['tuned_ms']:9.2f} "
              f"{t['speedup_tuned_vs_default']:13.2f}x {t['speedup_tuned_vs_torch']:11.2f}x")
    # one file per instruction set: hosts of one level compare, of two do not (AVX2 vs AVX-512)
    level = cfg.target["target"]["tvm"].get("mcpu", "llvm")
    out = ROOT / "bench" / "results" / f"tune_bench_{args.model}_{level}.json"
    out.write_text(json.dumps({
        "model": args.model, "threads": args.threads, "trials": args.trials, "top": args.top,
        "repeat": args.repeat, "machine": platform.machine(), "target": cfg.target["target"]["tvm"],
        "components": rows,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
