"""Time one UNet denoising step of the SD v1.5 architecture in PyTorch: the reference for the
webgpu build (bench/gpu/webgpu_unet_step.mjs).

    python3 bench/gpu/torch_unet_step.py --out torch_unet_step.json
        [--variants eager_fp32,eager_fp32_strict,eager_fp16,graph_fp16,compile_fp16] [--iters 30]
        [--warmup 10] [--tiny] [--count-flops]

One step = UNet2DConditionModel on CFG batch 2: sample [2, 4, 64, 64], a float32 scalar timestep,
encoder_hidden_states [2, 77, 768]. Random init from a fixed seed (no weights are read). Variants:
  eager_fp32          float32, PyTorch defaults (cuDNN convolutions may use TF32, matmuls do not)
  eager_fp32_strict   float32 with TF32 off everywhere (the arithmetic our fp32 WGSL does)
  eager_fp16          float16 weights and activations
  graph_fp16          eager_fp16 captured once into a CUDA graph and replayed: the GPU time of the
                      eager kernels without Python's launch overhead
  compile_fp16        torch.compile (inductor, default mode) of the float16 model
Each is timed with CUDA events around single steps after a warmup (median of --iters), and as
`loop_ms`: --iters steps issued back to back with one sync (a sampler's loop; launch overhead
overlaps GPU work there). The JSON
is rewritten after every variant, so a run cut short keeps what finished. --tiny builds a toy
config (for a CPU smoke test here). --count-flops counts FLOPs with torch.utils.flop_counter on
the meta device (no memory, no GPU).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

# SD v1.5's unet/config.json (runwayml/stable-diffusion-v1-5), written out.
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                         "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                       "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
TINY_UNET = dict(SD15_UNET, sample_size=8, block_out_channels=[32, 64], layers_per_block=1,
                 down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], norm_num_groups=8,
                 cross_attention_dim=32)

FLOP_PER_STEP = 1.61e12   # SD v1.5 UNet, CFG batch 2, 64x64 latents (DESIGN.md section 3)
PEAK_FLOPS = 790e12       # bf16/fp16 dense matrix rate measured on the H200 (KINDS.md)
ALL_VARIANTS = ("eager_fp32", "eager_fp32_strict", "eager_fp16", "graph_fp16", "compile_fp16")


def build(torch, config, device, dtype, seed=0):
    from diffusers import UNet2DConditionModel
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**config)
    return unet.to(dtype=dtype).eval().requires_grad_(False)


def inputs(torch, config, device, dtype, batch=2, seq=77, seed=1, latent_hw=None):
    g = torch.Generator(device="cpu").manual_seed(seed)
    h, w = latent_hw or (config["sample_size"], config["sample_size"])
    sample = torch.randn(batch, config["in_channels"], h, w, generator=g)
    text = torch.randn(batch, seq, config["cross_attention_dim"], generator=g)
    timestep = torch.tensor(500.0, dtype=torch.float32)
    return sample.to(device, dtype), timestep.to(device), text.to(device, dtype)


def time_steps(torch, fn, device, warmup, iters):
    """Median etc. of single-step times (ms): CUDA events on a GPU, perf_counter on the CPU."""
    cuda = device.startswith("cuda")
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def loop_time(torch, fn, device, iters):
    """Mean ms per step over `iters` steps issued back to back, one sync at the end."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3 / iters


def cuda_graph(torch, fn):
    """fn captured into a CUDA graph (after warmup on a side stream); returns the replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay():
        graph.replay()
        return out
    return replay


def count_flops(torch, config):
    from torch.utils.flop_counter import FlopCounterMode
    unet = build(torch, config, "meta", torch.float32)
    sample, timestep, text = inputs(torch, config, "meta", torch.float32)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(sample, timestep, text, return_dict=False)
    return counter.get_total_flops()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="torch_unet_step.json")
    ap.add_argument("--variants", default=",".join(ALL_VARIANTS))
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--tiny", action="store_true", help="toy config, for a smoke test")
    ap.add_argument("--count-flops", action="store_true")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (default: None)")
    ap.add_argument("--size", default=None,
                    help="image WIDTHxHEIGHT (latents / 8; default the config's 512x512)")
    args = ap.parse_args()

    import diffusers
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = TINY_UNET if args.tiny else SD15_UNET
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in ALL_VARIANTS:
            raise SystemExit(f"unknown variant {v}; known: {', '.join(ALL_VARIANTS)}")
    flop = None if args.tiny or args.size else FLOP_PER_STEP
    latent_hw = None
    if args.size:
        width, height = (int(n) for n in args.size.split("x"))
        latent_hw = (height // 8, width // 8)
    torch.backends.cudnn.benchmark = True
    report = {
        "torch": torch.__version__, "diffusers": diffusers.__version__,
        "python": platform.python_version(), "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor(),
        "config": "tiny" if args.tiny else "sd-v1-5", "unet_config": config,
        "inputs": {"sample": [2, config["in_channels"],
                              *(latent_hw or (config["sample_size"], config["sample_size"]))],
                   "timestep": [], "encoder_hidden_states": [2, 77, config["cross_attention_dim"]]},
        "warmup": args.warmup, "iters": args.iters, "flop_per_step": flop, "peak_flops": PEAK_FLOPS,
        "cudnn_benchmark": True, "results": {},
    }

    def write():
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)

    if args.count_flops:
        report["flop_counted"] = count_flops(torch, config)
        print(f"counted FLOP per step: {report['flop_counted'] / 1e12:.3f} T", flush=True)
        write()

    if device.startswith("cuda"):  # ~2 s of matrix products: clocks up before the first variant
        a = torch.randn(8192, 8192, device=device, dtype=torch.float16)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2:
            for _ in range(20):
                a @ a
            torch.cuda.synchronize()
        del a

    models = {}

    def model(dtype):
        if dtype not in models:
            t0 = time.perf_counter()
            models.clear()  # one model at a time on the GPU
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            models[dtype] = build(torch, config, device, dtype)
            report.setdefault("build_s", {})[str(dtype)] = time.perf_counter() - t0
        return models[dtype]

    for name in variants:
        dtype = torch.float32 if "fp32" in name else torch.float16
        strict = name.endswith("_strict")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = not strict   # PyTorch's defaults when not strict
        unet = model(dtype)
        sample, timestep, text = inputs(torch, config, device, dtype, latent_hw=latent_hw)
        entry = {"dtype": str(dtype).replace("torch.", ""),
                 "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32,
                          "cudnn": torch.backends.cudnn.allow_tf32}}
        fn_model = unet
        if name.startswith("compile"):
            fn_model = torch.compile(unet, mode=args.compile_mode)
            entry["compile_mode"] = args.compile_mode or "default"
        try:
            with torch.inference_mode():
                def step(m=fn_model, x=sample, t=timestep, c=text):
                    return m(x, t, c, return_dict=False)[0]
                if name.startswith("graph"):
                    step = cuda_graph(torch, step)
                t0 = time.perf_counter()
                out = step()
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                entry["first_step_s"] = time.perf_counter() - t0   # compile time for compile_*
                entry["output_finite"] = bool(torch.isfinite(out).all())
                entry["output_mean_abs"] = float(out.float().abs().mean())
                times = time_steps(torch, step, device, args.warmup, args.iters)
                entry["loop_ms"] = loop_time(torch, step, device, args.iters)
        except Exception as e:  # noqa: BLE001 -- any failure: record it, keep the other variants
            entry["error"] = f"{type(e).__name__}: {e}"[:2000]
            report["results"][name] = entry
            print(f"{name}: FAILED {entry['error'][:300]}", flush=True)
            write()
            continue
        med = statistics.median(times)
        entry.update(median_ms=med, min_ms=min(times), max_ms=max(times), times_ms=times)
        if flop:
            entry["tflops"] = flop / (med * 1e-3) / 1e12
            entry["fraction_of_peak"] = flop / (med * 1e-3) / PEAK_FLOPS
        if device.startswith("cuda"):
            entry["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()
        report["results"][name] = entry
        write()
        extra = f", {entry['fraction_of_peak'] * 100:.1f} % of peak" if flop else ""
        print(f"{name}: median {med:.2f} ms (min {min(times):.2f}, loop {entry['loop_ms']:.2f}){extra}; first step "
              f"{entry['first_step_s']:.1f} s", flush=True)
    write()


if __name__ == "__main__":
    main()
