"""On the GPU machine: diffusers' StableDiffusionPipeline on the same model, prompt and scheduler
as bench/gpu/time_to_image.mjs, seconds from prompt to pixels: the reference for our page.

    python3 bench/gpu/diffusers_time_to_image.py DIST OUT.json [--model sd-v1-5] [--images 3]
        [--steps 20] [--guidance 7.5] [--scheduler dpm++2m] [--dtype float16] [--device cuda]

The three models are drawn from the model config's seed (components.init_random, as the weights
stage and bench/gpu/fill_params.py do); the tokenizer and scheduler config are DIST's (what the
page reads). Reported: load_s (models drawn and moved to the device), each image's seconds
(prompt -> numpy pixels, synchronised), first_image_s (load + the first image: cuDNN and
cuBLAS warm up there) and steady_image_s (median of the rest). Needs transformers (the CLIP text
model) besides diffusers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PROMPT = "a photograph of an astronaut riding a horse"   # time_to_image.mjs's default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dist", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", default="sd-v1-5")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--scheduler", default="dpm++2m")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    try:
        import diffusers
        import torch
        from transformers import CLIPTokenizer
    except ImportError as e:
        sys.exit(f"diffusers_time_to_image: {e}; fix: install diffusers and transformers "
                 f"(bench/gpu/README.md: the wheels in .gpu/whl)")

    from stages.runtime import components, samplers
    from stages.engine import config

    cfg = config.load(args.model, "webgpu")
    index = json.loads((args.dist / "manifest.json").read_text())
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for rel in (index["tokenizer"], index["tokenizer_config"]):
            shutil.copyfile(args.dist / rel, Path(tmp) / Path(rel).name)
        tokenizer = CLIPTokenizer.from_pretrained(tmp, local_files_only=True)
    scheduler = samplers.make(json.loads((args.dist / index["scheduler"]).read_text()),
                              args.scheduler, args.steps)
    seed = cfg.model["model"]["seed"]
    parts = {c: components.init_random(c, cfg.arch(c), seed)
             for c in ("text_encoder", "unet", "vae_decoder")}
    pipe = diffusers.StableDiffusionPipeline(
        vae=parts["vae_decoder"], text_encoder=parts["text_encoder"], tokenizer=tokenizer,
        unet=parts["unet"], scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    sync()
    load = time.perf_counter() - start
    size = int(index["image_size"])
    report = {"model": args.model, "torch": torch.__version__, "diffusers": diffusers.__version__,
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "dtype": args.dtype, "steps": args.steps, "scheduler": args.scheduler,
              "image_size": size, "load_s": load, "images": []}
    for i in range(args.images):
        t = time.perf_counter()
        with torch.no_grad():
            image = pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance,
                         height=size, width=size, output_type="np",
                         generator=torch.Generator(device).manual_seed(i)).images[0]
        sync()
        report["images"].append({"seconds": time.perf_counter() - t,
                                 "mean": float(image.mean())})
        print(f"diffusers_time_to_image: image {i + 1}: {report['images'][-1]['seconds']:.2f} s",
              flush=True)
    seconds = [im["seconds"] for im in report["images"]]
    report["first_image_s"] = load + seconds[0]
    report["steady_image_s"] = statistics.median(seconds[1:]) if len(seconds) > 1 else None
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("first_image_s", "steady_image_s")}))


if __name__ == "__main__":
    main()
