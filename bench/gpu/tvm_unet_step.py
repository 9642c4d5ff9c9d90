"""On the GPU machine: our full-size UNet built for the `cuda` target, run by TVM's runtime, checked
against PyTorch on the same weights and timed; and the same weights and inputs written out so
that the webgpu build can be checked there too (bench/gpu/webgpu_unet_step.mjs --check).

    TVM_USE_RUNTIME_LIB=1 python3 bench/gpu/tvm_unet_step.py --out tvm_cuda.json \
        [--cuda DIR ...] [--check-dir DIR --webgpu DIR ...] [--model sd-v1-5] [--iters 30]

The UNet is drawn from the model config's seed on this machine (components.init_random: the same
code the weights stage runs); the verification inputs come from the target config's verify seed
(components.example_inputs), as in `doit verify`. The reference is PyTorch in float64 on the
GPU; PyTorch float32 with TF32 off is reported beside it as the floor float32 can reach.
Each --cuda DIR holds unet*.so and params/tensor-cache.json (emit's output for target=cuda; only
the order and dtypes of the params are read, the values are this machine's weights). TVM's
runtime comes without its compiler (TVM_USE_RUNTIME_LIB=1; bench/gpu/README.md says how it is
carried); its CUDA device API is a side library loaded here. Timing: CUDA-synchronised wall
clock around single calls of `main` after a warm-up (median of --iters), and `loop_ms`: --iters
calls back to back with one sync. With --check-dir, for every --webgpu DIR the params are written
as one raw file in that build's order and dtypes (params_<dir name>.bin), beside sample.bin,
timestep.bin, encoder_hidden_states.bin and expected.bin (the float64 reference as float32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def rel_l2(actual, expected) -> float:
    import numpy as np

    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(a - e) / np.linalg.norm(e))


def param_order(build_dir: Path) -> list[tuple[str, str]]:
    """(name, dtype) of each param in the order `main` takes them, from emit's tensor cache."""
    cache = json.loads((build_dir / "params" / "tensor-cache.json").read_text())
    dtypes = {r["name"]: r["dtype"] for shard in cache["records"] for r in shard["records"]}
    return [(name, dtypes[name]) for name in cache["metadata"]["params"]]


def export_name(key: str) -> str:
    """The Relax param name torch.export gives a state-dict key of the wrapper ("m.conv_in.weight"
    -> "p_m_conv_in_weight")."""
    return "p_" + key.replace(".", "_")


def load_tvm_cuda(arch: str):
    """TVM's runtime with its CUDA side library, and a CUDA compiler for the kernels.

    TVM 0.27 exports a cuda library with its kernels as CUDA source ("cuda" format) that the
    runtime compiles when the library is loaded, through the global `tvm_callback_cuda_compile`,
    which the runtime-only package lacks (its own needs the compiler library): nvcc stands in
    here, for the arch the target config names."""
    import ctypes
    import subprocess
    import tempfile

    import tvm
    import tvm_ffi

    lib = Path(tvm.__file__).parent / "lib" / "libtvm_runtime_cuda.so"
    ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)   # registers the CUDA device API and modules
    if not tvm.cuda(0).exist:
        sys.exit("tvm_unet_step: TVM sees no CUDA device")

    @tvm_ffi.register_global_func("tvm_callback_cuda_compile", override=True)
    def compile_cuda(code, *_target):
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "kernels.cu", Path(tmp) / "kernels.fatbin"
            src.write_text(code)
            subprocess.run(["nvcc", "--fatbin", "-O3", "-w", f"-arch={arch}", "-o", str(out),
                            str(src)], check=True)
            return bytearray(out.read_bytes())

    return tvm


def time_calls(call, sync, iters: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        call()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    start = time.perf_counter()
    for _ in range(iters):
        call()
    sync()
    loop = (time.perf_counter() - start) * 1e3 / iters
    return {"median_ms": statistics.median(times), "min_ms": min(times), "loop_ms": loop,
            "iters": iters}


def kernel_profile(call, sync, top: int = 25) -> dict:
    """GPU time per kernel of one call, through PyTorch's profiler (CUPTI sees every kernel of
    the process, TVM's too): the `top` costliest by total time, and the sum over all."""
    from torch.profiler import ProfilerActivity, profile

    call()
    sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        sync()
    rows = []
    for e in prof.key_averages():
        us = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if us > 0:
            rows.append({"kernel": e.key, "calls": e.count, "ms": us / 1e3})
    rows.sort(key=lambda r: -r["ms"])
    return {"kernel_ms_total": sum(r["ms"] for r in rows), "kernels_distinct": len(rows),
            "launches": sum(r["calls"] for r in rows), "top": rows[:top]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="sd-v1-5")
    ap.add_argument("--cuda", type=Path, nargs="*", default=[])
    ap.add_argument("--webgpu", type=Path, nargs="*", default=[])
    ap.add_argument("--check-dir", type=Path, default=None)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--profile", action="store_true",
                    help="also record GPU time per kernel of one step (PyTorch's profiler)")
    ap.add_argument("--torch-device", default="cuda",
                    help="where PyTorch computes the reference (cpu: a smoke test off the GPU)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from stages.runtime import components
    from stages.engine import config

    cfg = config.load(args.model, "cuda")
    specs = cfg.input_specs("unet")
    vcfg = cfg.target["verify"]
    inputs = components.example_inputs(specs, vcfg["seed"],
                                       cfg.model["text_encoder"]["vocab_size"])
    where = torch.device(args.torch_device)
    report = {"model": args.model, "torch": torch.__version__,
              "device_name": torch.cuda.get_device_name() if where.type == "cuda" else "cpu",
              "inputs": {
                  n: list(a.shape) for n, a in inputs.items()}, "results": {}}

    def save():
        args.out.write_text(json.dumps(report, indent=1) + "\n")

    start = time.perf_counter()
    module = components.wrapper("unet", components.init_random("unet", cfg.arch("unet"),
                                                               cfg.model["model"]["seed"]))
    state = {export_name(k): v for k, v in module.state_dict().items()}
    report["init_s"] = time.perf_counter() - start

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        ref64 = module.double().to(where)(*(torch.from_numpy(inputs[n]).double().to(where)
                                            for n in specs)).cpu().numpy()
        module.float()
        fp32 = module(*(torch.from_numpy(inputs[n]).to(where) for n in specs)).cpu().numpy()
    module.cpu()
    if where.type == "cuda":
        torch.cuda.empty_cache()
    report["torch_fp32_strict_rel_l2"] = rel_l2(fp32, ref64)
    print(f"torch fp32 (TF32 off) vs float64: rel-L2 {report['torch_fp32_strict_rel_l2']:.2e}",
          flush=True)
    save()

    if args.check_dir:
        args.check_dir.mkdir(parents=True, exist_ok=True)
        for n in specs:
            inputs[n].tofile(args.check_dir / f"{n}.bin")
        ref64.astype(np.float32).tofile(args.check_dir / "expected.bin")
        for d in args.webgpu:
            with open(args.check_dir / f"params_{d.name}.bin", "wb") as f:
                for name, dtype in param_order(d):
                    f.write(state[name].detach().numpy().astype(dtype).tobytes())
            print(f"wrote {args.check_dir}/params_{d.name}.bin", flush=True)

    if not args.cuda:
        return
    tvm = load_tvm_cuda(cfg.target["target"]["tvm"]["arch"])
    from tvm.runtime.vm import VirtualMachine

    dev = tvm.cuda(0)
    for d in args.cuda:
        lib = next(d.glob("*.so"))
        order = param_order(d)
        missing = [n for n, _ in order if n not in state]
        if missing:
            sys.exit(f"tvm_unet_step: {len(missing)} params of {d} not in the torch model, "
                     f"e.g. {missing[:3]}")
        threshold = vcfg["max_rel_l2_fp16"] if "float16" in {t for _, t in order} \
            else vcfg["max_rel_l2"]
        start = time.perf_counter()
        vm = VirtualMachine(tvm.runtime.load_module(str(lib)), dev)
        load_s = time.perf_counter() - start
        params = [tvm.runtime.tensor(state[n].detach().numpy().astype(t), dev) for n, t in order]
        args_in = [tvm.runtime.tensor(inputs[n], dev) for n in specs]
        out = vm["main"](*args_in, *params).numpy()
        result = {"lib": lib.name, "load_s": load_s, "rel_l2": rel_l2(out, ref64),
                  "max_rel_l2": threshold,
                  "finite": bool(np.isfinite(out).all())}
        result["passed"] = result["finite"] and result["rel_l2"] <= threshold
        result.update(time_calls(lambda: vm["main"](*args_in, *params), dev.sync, args.iters))
        if args.profile:
            result["profile"] = kernel_profile(lambda: vm["main"](*args_in, *params), dev.sync)
            for r in result["profile"]["top"][:8]:
                print(f"  {r['ms']:8.2f} ms  {r['calls']:4d}x  {r['kernel']}", flush=True)
        report["results"][d.name] = result
        print(f"tvm cuda {d.name}: rel-L2 {result['rel_l2']:.2e} (<= {threshold:.0e}: "
              f"{result['passed']}), {result['median_ms']:.2f} ms/step, loop "
              f"{result['loop_ms']:.2f} ms", flush=True)
        save()
        del vm, params
    save()


if __name__ == "__main__":
    os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")
    main()
