"""Where a compiled component's time goes: every kernel call of one run, timed, summed by kernel.

The question before each CPU schedule change (docs/cpu.md): which kernels hold the time, how
many calls each makes, and how many milliseconds a call. It runs the component a workspace
built (`doit build model=M target=llvm` there) through the same class verify and generate use,
once to warm up and once under TVM's VM instrument, which is called before and after every
call the VM makes; the wall time between the two is the kernel's (TVM's kernels run their
threads to the end of the call, so nothing overlaps). Prints the top kernels and the total;
writes nothing.

    TVM_NUM_THREADS=2 .venv/bin/python bench/cpu_profile.py --workspace /tmp/sd15/ws \
        --model sd-v1-5 --component text_encoder [--top 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def profile(compiled, tensors) -> dict[str, list[float]]:
    """{kernel symbol: [seconds of each call]} over one call of `main`."""
    from tvm.runtime.vm import VMInstrumentReturnKind

    calls: dict[str, list[float]] = defaultdict(list)
    started: list[float] = []

    def instrument(func, symbol, before, ret, *args):
        if before:
            started.append(time.perf_counter())
        else:
            calls[symbol].append(time.perf_counter() - started.pop())
        return VMInstrumentReturnKind.NO_OP

    compiled.vm.set_instrument(instrument)
    try:
        compiled.call(*tensors)
    finally:
        compiled.vm.set_instrument(None)
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=ROOT)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--component", default="unet")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count()))

    import tvm

    from stages.engine import config
    from stages.runtime import components
    from stages.runtime.component import Component

    cfg = config.load(args.model, "llvm")
    dist = args.workspace / "dist" / args.model / "llvm" / args.component
    if not (dist / "manifest.json").is_file():
        sys.exit(f"cpu_profile: no {dist}/manifest.json; fix: run `doit build "
                 f"model={args.model} target=llvm` in {args.workspace}")
    compiled = Component(dist / f"{args.component}.so", dist / "params", dist / "manifest.json",
                         tvm.cpu())
    example = components.example_inputs(cfg.input_specs(args.component), 0,
                                        cfg.model["text_encoder"]["vocab_size"])
    tensors = compiled.tensors(example[n] for n in cfg.input_specs(args.component))
    start = time.perf_counter()
    compiled.call(*tensors)                                    # warm-up
    warm = time.perf_counter() - start
    calls = profile(compiled, tensors)
    total = sum(map(sum, calls.values()))
    print(f"{args.model} {args.component}: one call {warm * 1e3:.1f} ms, kernels "
          f"{total * 1e3:.1f} ms in {sum(map(len, calls.values()))} calls "
          f"(TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']})")
    print(f"{'ms':>9} {'share':>6} {'calls':>5} {'ms/call':>8}  kernel")
    for symbol, times in sorted(calls.items(), key=lambda kv: -sum(kv[1]))[:args.top]:
        print(f"{sum(times) * 1e3:9.1f} {sum(times) / total:6.1%} {len(times):5d} "
              f"{sum(times) / len(times) * 1e3:8.2f}  {symbol}")


if __name__ == "__main__":
    main()
