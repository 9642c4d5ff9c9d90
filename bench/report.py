"""Regenerate bench/REPORT.md and its charts (bench/charts/*.png) from bench/results/*.json.

Every figure in the report comes from a results file written by one of the benchmarks in
bench/ (each runnable on its own); this script only reads them, so the report can be rebuilt
at any time and never drifts from the data:

    .venv/bin/python bench/report.py

Sections whose results file is missing say which command makes it.
"""

from __future__ import annotations

import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
CHARTS = BENCH / "charts"
PEAK_TFLOPS = 790.0          # H200 dense bf16/fp16 tensor-core peak, as DESIGN.md uses
UNET_STEP_TFLOP = 1.61       # SD v1.5 UNet, CFG batch 2, 64x64 latents


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def missing(command: str) -> list[str]:
    return [f"_No results yet: run `{command}`._", ""]


def chart(name: str, draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    draw(ax)
    fig.tight_layout()
    CHARTS.mkdir(exist_ok=True)
    fig.savefig(CHARTS / f"{name}.png")
    plt.close(fig)
    return f"![{name}](charts/{name}.png)"


def section_build_cost() -> list[str]:
    out = ["## Build cost", ""]
    tiny = load("build_bench.json")
    if tiny:
        out += [f"Tiny model, {tiny['target']}, {tiny['cpus']} cores "
                f"(`bench/build_bench.py`):", "",
                "| scenario | seconds | x cold | summary |", "|---|---|---|---|"]
        for name, s in tiny["scenarios"].items():
            out.append(f"| {name} | {s['seconds']:.2f} | {s['ratio_to_cold']:.3f} | "
                       f"{s['summary']} |")
        out.append("")
    else:
        out += missing("python bench/build_bench.py")
    rebuild = load("rebuild_cost_sd-v1-5_webgpu.json")
    if rebuild:
        out += [f"sd-v1-5 webgpu rebuilds, `doit {rebuild['task']}` (`bench/rebuild_cost.py`; the "
                f"pass edit is a real change of the UNet-only pass):", "",
                "| scenario | seconds | summary |", "|---|---|---|"]
        out += [f"| {n} | {r['seconds']:.2f} | {r['summary']} |"
                for n, r in rebuild["scenarios"].items()]
        out.append("")
    else:
        out += missing("python bench/rebuild_cost.py --model sd-v1-5 --target webgpu --task emit "
                       "--workspace /tmp/sd15")
    for target in ("llvm", "webgpu"):
        data = load(f"stage_cost_sd-v1-5_{target}.json")
        if not data:
            out += missing(f"python bench/stage_cost.py --model sd-v1-5 --target {target} "
                           f"--workspace /tmp/sd15")
            continue
        until = f" (up to `{data['until']}`)" if data.get("until") else ""
        built = [t for t in data["tasks"] if t["outcome"] == "built"]
        out += [f"sd-v1-5 (random init) for {target}{until}, each task its own process, "
                f"cold: {data['built_seconds']:.0f} s of building, peak RSS "
                f"{data['peak_rss_mb'] / 1024:.1f} GiB (`bench/stage_cost.py`):", "",
                "| task | wall s | CPU s | peak RSS (MB) |", "|---|---|---|---|"]
        out += [f"| {t['task']} | {t['seconds']:.1f} | {t['cpu_seconds']:.1f} | "
                f"{t['peak_rss_mb']} |" for t in built]
        out.append("")
        if built:
            out += [chart(f"stage_cost_{target}", lambda ax, b=built: (
                ax.barh([t["task"] for t in b][::-1], [t["seconds"] for t in b][::-1]),
                ax.set_xlabel("seconds (cold, 2 cores)"),
                ax.set_title(f"sd-v1-5 {target}: cold build time per task"),
                ax.tick_params(axis="y", labelsize=6))), ""]
    return out


def section_memory() -> list[str]:
    out = ["## Memory and download", ""]
    data = load("model_size_sd-v1-5_webgpu.json")
    if not data:
        return out + missing("python bench/model_size.py --model sd-v1-5 --target webgpu")
    out += ["| variant | shards | unplanned activations | planned | planned/unplanned | "
            "largest buffer | measured peak (params + activations) |",
            "|---|---|---|---|---|---|---|"]
    for v, s in data["variants"].items():
        measured = (f"{mb(s['measured_peak_bytes'])} on {s['measured_on']}"
                    if s.get("measured_peak_bytes") else "-")
        out.append(f"| {v} | {mb(s['shard_bytes'])} | {gb(s['unplanned_activation_bytes'])} | "
                   f"{gb(s['planned_activation_bytes'])} | {s['planned_fraction']:.1%} | "
                   f"{mb(s['largest_buffer_bytes'])} | {measured} |")
    out += ["", "| precision | download (shards + wasm) | largest buffer | GPU memory, one "
            f"{data['image_size']}x{data['image_size']} image (all params + the largest "
            "component's planned activations) | the same with every component's activations kept |",
            "|---|---|---|---|---|"]
    for p, t in data["totals"].items():
        out.append(f"| {p} | {gb(t['download_bytes'])} | {mb(t.get('largest_buffer_bytes', 0))} | "
                   f"{gb(t['gpu_bytes'])} | {gb(t.get('gpu_bytes_all_kept', t['gpu_bytes']))} |")
    out.append("")
    out += [f"- {note}" for note in data.get("notes", [])] + ([""] if data.get("notes") else [])
    variants = data["variants"]
    out += [chart("activations", lambda ax: (
        ax.bar(list(variants),
               [s["unplanned_activation_bytes"] / 1e9 for s in variants.values()],
               color="#bbbbbb"),
        ax.bar(list(variants),
               [s["planned_activation_bytes"] / 1e9 for s in variants.values()],
               color="#3b6ea5"),
        ax.set_ylabel("GB"), ax.tick_params(axis="x", labelsize=6),
        ax.set_title("activation bytes: unplanned (grey) vs planned (blue)"))), ""]
    return out


def per_level(prefix: str) -> list[dict]:
    """The CPU results `<prefix>_<mcpu>.json`, one per x86-64 level measured (or
    `<prefix>_llvm.json`, a host without one): AVX2 and AVX-512 hosts are tabled apart."""
    paths = [*RESULTS.glob(f"{prefix}_x86-64*.json"), *RESULTS.glob(f"{prefix}_llvm.json")]
    return [json.loads(path.read_text()) for path in sorted(paths)]


def tune_benches():
    """(model, results) per model and level measured (bench/tune_bench.py), (model, None) for a
    model with none."""
    for model in ("tiny", "sd-v1-5"):
        found = per_level(f"tune_bench_{model}")
        if not found:
            yield model, None
        for data in found:
            yield model, data


def section_cpu() -> list[str]:
    out = ["## Speed on CPU (compiled vs torch eager, same threads, median)", ""]
    for model, data in tune_benches():
        if data is None:
            out += missing(f"python bench/tune_bench.py --model {model}")
            continue
        tuned = {c: t.get("tuned_kernels") for c, t in data["components"].items()}
        if data["trials"]:
            budget = f"tuned with {data['trials']} trials (top {data['top']} kernels)"
        elif any(tuned.values()):
            budget = ("the committed tuning records: "
                      + ", ".join(f"{c} {n} kernels" for c, n in tuned.items() if n))
        else:
            budget = "no tuning records"
        runs = f"median of {data['repeat']} runs" if data["repeat"] > 1 else "one run each"
        target = data.get("target", {})
        out += [f"{model}: {data['threads']} threads, llvm {target.get('mcpu', '(no mcpu)')}, "
                f"default schedules for every kernel vs {budget}, {runs} "
                f"(`bench/tune_bench.py`):", "",
                "| component | torch eager ms | default ms | tuned ms | default/tuned | "
                "torch/tuned |", "|---|---|---|---|---|---|"]
        for c, t in data["components"].items():
            if t.get("tuned_ms") is None or not t.get("tuned_kernels"):   # no records: one lib
                out.append(f"| {c} | {t['torch_eager_ms']:.2f} | {t['default_ms']:.2f} | "
                           f"no records | - | default: "
                           f"{t['torch_eager_ms'] / t['default_ms']:.2f}x |")
                continue
            out.append(f"| {c} | {t['torch_eager_ms']:.2f} | {t['default_ms']:.2f} | "
                       f"{t['tuned_ms']:.2f} | {t['speedup_tuned_vs_default']:.2f}x | "
                       f"{t['speedup_tuned_vs_torch']:.2f}x |")
        out.append("")
        out += [f"- {note}" for note in data.get("notes", [])] + ([""] if data.get("notes") else [])
    for build in per_level("build_sd-v1-5_llvm"):
        rel = ", ".join(f"{c} {r:.1e}" for c, r in build["verify_rel_l2"].items())
        rss = f", peak RSS {build['peak_rss_gib']} GiB" if build.get("peak_rss_gib") else ""
        out += [f"`{build['command']}` at {build['commit']}: **{build['wall_s'] / 60:.1f} min** "
                f"({build['stages']}{rss}), verify passed for all four components (rel-L2 vs "
                f"torch: {rel}; limit {build['verify_limit']:g}); {build['machine']}.", ""]
    for gen in per_level("generate_sd-v1-5_llvm"):
        s = gen["seconds"]
        out += [f"`{gen['command']}`: **{s['total_s'] / 60:.1f} min** ({s['denoise_s']:.0f} s for "
                f"{gen['unet_calls']} UNet calls, {s['denoise_s'] / gen['unet_calls']:.1f} s each; "
                f"VAE decoder {s['vae_decoder_s']:.1f} s, loading {s['load_s']:.0f} s); "
                f"{gen['machine']}.", ""]
    out += cpu_default_schedule()
    return out


def cpu_default_schedule() -> list[str]:
    """The tiny model's kernels without a tuning record, step by step (docs/cpu.md): the plain
    loops, the default schedule for the plain llvm target (SSE2), and today's (the host's
    instruction set, the CPU attention kernel)."""
    steps = [load(f"tune_bench_tiny_{n}.json") for n in ("before_cpu_schedule", "cpu_schedule")]
    now = [data for model, data in tune_benches() if model == "tiny" and data]
    if not all(steps) or not now:
        return missing("python bench/tune_bench.py --trials 0, without and with "
                       "stages/passes/cpu_default_schedule.py")
    out = [f"The default CPU schedule, step by step (docs/cpu.md), tiny, {now[0]['threads']} "
           f"threads, no tuning records, median of {now[0]['repeat']} (torch eager on each "
           "host beside its figure):", "",
           "| component | plain loops ms | default schedule, SSE2 ms | " + " | ".join(
               f"default schedule now, {d['target']['mcpu']} ms (torch ms)" for d in now)
           + " |", "|---|---|---|" + "---|" * len(now)]
    for c in now[0]["components"]:
        was = [s["components"][c]["untuned_ms"] for s in steps]
        out.append(f"| {c} | {was[0]:.2f} | {was[1]:.2f} | " + " | ".join(
            f"{d['components'][c]['default_ms']:.2f} ({d['components'][c]['torch_eager_ms']:.2f})"
            for d in now) + " |")
    return out + [""]


def section_gpu() -> list[str]:
    out = ["## Speed on a real GPU: WebGPU, TVM's CUDA and PyTorch (NVIDIA H200)", ""]
    data = load("h200_unet_step.json")
    if not data:
        return out + missing("bench/gpu/run_on_device.sh on the H200 (see bench/gpu/README.md)")
    rows = data["rows"]
    out += [f"One UNet denoising step of SD v1.5 (random init, CFG batch 2, 64x64 latents, "
            f"{UNET_STEP_TFLOP} TFLOP), measured with `bench/gpu/run_on_device.sh` (raw files, and "
            f"which call each row came from, in `bench/results/h200/` and the notes below). webgpu rows: our build's wasm + WGSL with "
            f"the tvmjs runtime under Dawn (npm `webgpu`) in Node on the NVIDIA Vulkan driver; "
            f"tvm cuda rows: the same graph built for `target=cuda`, run by TVM's runtime.",
            ""]
    checked = any("rel_l2_vs_fp64" in r for r in rows)
    extra = " rel-L2 vs torch float64 |" if checked else ""
    out += ["| what | ms / step | x torch eager fp16 | x torch.compile fp16 | TFLOP/s "
            "| % of peak |" + extra, "|---|---|---|---|---|---|" + ("---|" if checked else "")]
    for r in rows:
        check = ""
        if checked:
            check = (f" {r['rel_l2_vs_fp64']:.1e}{'' if r['check_passed'] else ' (FAILED)'} |"
                     if "rel_l2_vs_fp64" in r else " - |")
        compile_ratio = r.get("ratio_to_torch_compile_fp16")
        out.append(f"| {r['variant']} | {r['ms']:.1f} | {r['ratio_to_torch_eager_fp16']:.2f} | "
                   f"{'-' if compile_ratio is None else f'{compile_ratio:.2f}'} | "
                   f"{r['tflops']:.1f} | "
                   f"{r['fraction_of_peak']:.2%} |" + check)
    out += ["", "x columns: ms of the row / ms of the reference (above 1 = slower)."
            + (" rel-L2: the first step's output on the weights and inputs drawn on the GPU "
               "machine (bench/gpu/tvm_unet_step.py) against PyTorch in float64; PyTorch float32 "
               f"(TF32 off) itself is {data['torch_fp32_strict_rel_l2']:.1e} from it."
               if checked and data.get("torch_fp32_strict_rel_l2") else ""), ""]
    for note in data.get("notes", []):
        out.append(f"- {note}")
    out.append("")
    out += [chart("h200_unet_step", lambda ax: (
        ax.barh([r["variant"] for r in rows][::-1], [r["ms"] for r in rows][::-1]),
        ax.set_xscale("log"), ax.set_xlabel("ms per UNet step (log scale, lower is better)"),
        ax.set_title("SD v1.5 UNet step on one H200"))), ""]
    return out


def section_time_to_image() -> list[str]:
    """Prompt to pixels on the H200: the page's pipeline under Dawn against diffusers."""
    out = ["## Time to image on a real GPU (NVIDIA H200)", ""]
    data = load("h200_time_to_image.json")
    if not data:
        return out + missing("TTI_DIST=.gpu/tti/sd-v1-5 bench/gpu/run_on_device.sh (see "
                             "bench/gpu/README.md)")
    web, ref = data["webgpu"], data["diffusers"]
    out += [f"SD v1.5 architecture (random init from the model's seed), {data['size']}x"
            f"{data['size']}, {data['steps']} steps {data['scheduler']} with guidance "
            f"{data['guidance']}, prompt to RGBA pixels, one device call "
            f"(`bench/results/h200/time_to_image/`). webgpu: the page's own modules (web/src: "
            f"tokenizer, text encoder, scheduler loop, UNet, VAE decoder) under Dawn in Node, "
            f"flavor `{web['flavor']}`; diffusers: `StableDiffusionPipeline` {ref['dtype']} on "
            f"CUDA.", "",
            "| pipeline | first image s (load + compile + image) | steady image s | load s "
            "| UNet ms / step |",
            "|---|---|---|---|---|"]
    for name, r in (("webgpu (page pipeline, Dawn)", web), (f"diffusers {ref['dtype']}", ref)):
        per_step = r.get("ms_per_step")
        out.append(f"| {name} | {r['first_image_s']:.2f} | {r['steady_image_s']:.2f} | "
                   f"{r['load_s']:.2f} | {'-' if per_step is None else f'{per_step:.1f}'} |")
    out += ["", *(f"- {note}" for note in data.get("notes", [])), ""]
    return out


def section_img2img_few_step() -> list[str]:
    """Image-to-image's VAE encoder and the guidance-free (batch 1) UNet step on the H200."""
    out = ["## Image-to-image's encoder and the guidance-free UNet (NVIDIA H200)", ""]
    path = BENCH / "results" / "h200" / "img2img_few_step" / "summary.json"
    if not path.is_file():
        return out + missing("bench/gpu/run_on_device.sh with the vae_encoder and batch-1 UNet "
                             "dirs (bench/results/h200/img2img_few_step/README.md)")
    rows = json.loads(path.read_text())["rows"]
    out += ["Full size, WebGPU (Dawn in Node), median of 20; how it was made and what it means: "
            "`bench/results/h200/img2img_few_step/README.md`.", "",
            "| variant | ms |", "|---|---|"]
    out += [f"| {r['variant']} | {r['ms']:.1f} |" for r in rows]
    return out + [""]


def section_int8() -> list[str]:
    """8-bit weights against float16 at full size on the H200: download, step, image."""
    out = ["## 8-bit weights (SD v1.5 architecture, NVIDIA H200)", ""]
    path = BENCH / "results" / "h200" / "int8" / "int8.json"
    if not path.is_file():
        return out + missing("the calls in bench/results/h200/int8/README.md")
    d = json.loads(path.read_text())
    dl, step, tti = d["download_mb"], d["unet_step_ms"], d["time_to_image_steady_s"]
    out += ["How it was made and what it means: `bench/results/h200/int8/README.md`.", "",
            "| | float16 | int8 weights |", "|---|---|---|",
            f"| download, all four components | {dl['float16']['total']:.0f} MB | "
            f"{dl['int8']['total']:.0f} MB |",
            f"| download, text to image | {dl['float16']['text_to_image']:.0f} MB | "
            f"{dl['int8']['text_to_image']:.0f} MB |",
            f"| UNet step, -sm | {step['webgpu unet-fp16-sm']:.1f} ms | "
            f"{step['webgpu unet-fp16-sm-q8']:.1f} ms |",
            f"| UNet step, SIMT | {d['unet_step_ms_float16_same_session_12']['webgpu unet-fp16']:.1f}"
            f" ms | {step['webgpu unet-fp16-q8']:.1f} ms |",
            f"| 20 steps, prompt to pixels | {tti['float16']:.2f} s | {tti['int8']:.2f} s |",
            f"| image PSNR vs float16, same seed | | {d['image_psnr_db_int8_vs_float16']:.1f} dB |",
            ""]
    return out


def section_lora() -> list[str]:
    """A LoRA's rebuild against the cold build of the components it changes."""
    out = ["## A LoRA's rebuild", ""]
    data = load("lora_rebuild_sd-v1-5_llvm.json")
    if not data:
        return out + missing("bench/lora_rebuild.py --model sd-v1-5 --target llvm "
                             "--workspace WS")
    out += [f"Full size ({data['model']}, {data['target']}, {', '.join(data['components'])}), "
            f"this 2-core machine; LoRA files "
            + ", ".join(f"{n} {v} MB" for n, v in data["lora_files_mb"].items())
            + f". Cold build of these components, weights to emit (the seconds each stage took, "
              f"from the cache's provenance): **{data['cold_total_seconds']:.0f} s**.", "",
            "| change | seconds | stages built | restored |", "|---|---|---|---|"]
    for name, run in data["runs"].items():
        out.append(f"| {name} | {run['seconds']:.1f} | {', '.join(run['built']) or '-'} | "
                   f"{', '.join(run['restored']) or '-'} |")
    return out + [""]


def section_sizes() -> list[str]:
    """What each image size costs at full size: build seconds, wasm, memory, step time."""
    out = ["## Image sizes (SD v1.5 architecture: a variant per size)", ""]
    data = load("sizes_sd-v1-5.json")
    if not data:
        return out + missing("bench/sizes_cost.py --model sd-v1-5-sizes --target webgpu "
                             "--h200 bench/results/h200/sizes")
    step = data["step_ms"]
    out += ["Each size's UNet and VAE are compiled for its shapes and share the default size's "
            "weights and shards (docs/build-dag.md). Build seconds: the stages from capture to "
            "compile on this 2-core machine (cache provenance); step times: the H200 under Dawn "
            "(median of 20; `bench/results/h200/sizes/`), PyTorch eager fp16 and in a CUDA "
            "graph beside them.", "",
            "| variant | size | build s | wasm (xz) | activations | largest buffer | webgpu ms "
            "| torch eager fp16 ms | torch CUDA graph fp16 ms |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, v in data["variants"].items():
        size = "x".join(map(str, v["size"]))
        torch = ("eager_fp16", "graph_fp16") if name.startswith("unet") else ()
        cells = [f"{step[f'torch {size} {k}']:.1f}" if f"torch {size} {k}" in step else "-"
                 for k in ("eager_fp16", "graph_fp16")] if torch else ["-", "-"]
        ms = step.get(f"webgpu {name}")
        out.append(f"| {name} | {size} | {v['build_seconds']:.0f} | "
                   f"{v['library_bytes'] / 1e6:.2f} MB ({v['library_xz_bytes'] / 1e6:.2f}) | "
                   f"{v['activation_bytes'] / 2**20:.0f} MiB | "
                   f"{v['largest_buffer_bytes'] / 2**20:.0f} MiB | "
                   f"{f'{ms:.1f}' if ms else '-'} | {cells[0]} | {cells[1]} |")
    return out + ["", *[f"- {n}" for n in data.get("notes", [])], ""]


def section_train_shapes() -> list[str]:
    """The trained model's runs: steps, pictures, seconds and the loss along the way."""
    out = ["## The trained model (configs/models/shapes/)", ""]
    path = BENCH.parent / "configs" / "models" / "shapes" / "train.json"
    if not path.is_file():
        return out + missing("doit train")
    runs, run = [], json.loads(path.read_text())
    while run:
        runs.insert(0, run)
        run = run.get("resumed_from")
    out += ["`doit train` (stages/runtime/train.py) on pictures drawn from a seeded generator "
            "(stages/runtime/shapes.py); each run's loss is the mean over the steps before each "
            "point. `train.json` beside the weights holds the whole curves.", "",
            "| run | device | seed | phase | steps | pictures | seconds | loss: first, middle, last |",
            "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(runs, 1):
        for phase in ("vae", "unet"):
            if phase not in r:
                continue
            p, curve = r[phase], r[phase]["curve"]
            losses = ", ".join(f"{c['loss']:.4f}" for c in (curve[0], curve[len(curve) // 2],
                                                             curve[-1]))
            out.append(f"| {i} | {r['device_name']} | {r['seed']} | "
                       f"{'VAE' if phase == 'vae' else 'UNet + text encoder'} | {p['steps']} | "
                       f"{p['pictures']} | {curve[-1]['seconds']:.0f} | {losses} |")
    return out + [""]


def section_lavapipe_jit() -> list[str]:
    """How long lavapipe compiles an attention kernel, by the keys a step it unrolls."""
    out = ["## Compiling a shader on lavapipe (CI's WebGPU)", ""]
    r = load("lavapipe_jit.json")
    if r is None:
        return out + missing("python bench/lavapipe_jit.py")
    out += [r["what"], "", f"Load: {r['load']}." if r.get("load") else "", "",
            "| keys a step | WGSL bytes | first dispatch, s |", "|---|---|---|"]
    out += [f"| {row['keys_per_step']} | {row['wgsl_bytes']} | {row['first_dispatch_s']} |"
            for row in r["rows"]]
    return out + [""]


def section_profile() -> list[str]:
    """Top kernels of the webgpu UNet step on the H200, from timestamp queries, per profiled run."""
    out = ["## Where a webgpu UNet step's GPU time goes (H200, timestamp queries)", ""]
    # the last device run (h200/webgpu_*): it times the build before the change and after
    runs = sorted((BENCH / "results" / "h200").glob("webgpu_*.json"))
    runs = [(p, json.loads(p.read_text())) for p in runs]
    runs = [(p, r) for p, r in runs if r.get("profile")]
    if not runs:
        return out + missing("bench/gpu/run_on_device.sh with WEBGPU_ARGS='--profile 2'")
    for path, r in runs:
        prof = r["profile"]
        rel = path.relative_to(BENCH / "results")
        out += [f"`{rel}` ({r['label']}): {prof['kernel_ms_total']:.1f} ms of GPU time in "
                f"{prof['dispatches_per_step']:.0f} dispatches ({prof['kernels_distinct']} "
                f"kernels), {r['median_ms']:.1f} ms wall per step:", "",
                "| kernel | calls | ms | share |", "|---|---|---|---|"]
        for k in prof["top"][:12]:
            out.append(f"| {k['kernel']} | {k['calls']:.0f} | {k['ms']:.2f} | {k['share']:.1%} |")
        out.append("")
    return out


def main() -> None:
    lines = ["# websd benchmarks", "",
             "Generated by `python bench/report.py` from `bench/results/*.json`; do not edit.",
             ""]
    for section in (section_build_cost, section_memory, section_cpu, section_gpu,
                    section_time_to_image, section_img2img_few_step, section_int8, section_lora,
                    section_sizes, section_train_shapes, section_lavapipe_jit, section_profile):
        lines += section()
    (BENCH / "REPORT.md").write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {BENCH / 'REPORT.md'}")


if __name__ == "__main__":
    main()
