"""train: the default model's weights, learned from pictures the project draws itself.

    python -m stages.runtime.train --out configs/models/shapes --tokenizer DIR [--minutes 8]
        [--device cuda] [--seed 0] [--batch 512] [--resume DIR]

What `doit train` runs (on a GPU machine: minutes; it runs on a CPU too, slowly). The
architecture is configs/models/shapes.toml's; the pictures and captions come from
stages/runtime/shapes.py, drawn on the device from a seeded generator, a fresh batch every step
(a few hundred thousand pictures in all). Two phases, sharing the time given:

1. the VAE (AutoencoderKL) alone: reconstruction (L1 + MSE) and a small KL term; then the
   latents' scaling factor, 1 / their standard deviation, as SD's was chosen;
2. the UNet and the text encoder together on the frozen VAE's latents: SD's noise-prediction
   loss on the model's noise schedule (scheduler section), the caption left empty one time in
   ten so that classifier-free guidance has an unconditional prediction to push from.

--resume DIR goes on from a directory this wrote: its VAE (and scaling factor) stay, the UNet
and text encoder train for the whole time given, at 3/4 of the learning rate; train.json keeps the
earlier runs' records under "resumed_from".

Writes a diffusers directory (StableDiffusionPipeline.save_pretrained, float16 weights) with the
tokenizer given (the tokenizer stage's output: the real CLIP vocabulary) and train.json: the
seed, the steps, the seconds and the loss curve of each phase. torch and diffusers are imported
inside main: importing this module is free.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from stages.engine.config import CONFIGS
from stages.runtime import shapes

VAE_SHARE = 0.3          # of the time: the VAE learns flat shapes fast
UNCONDITIONAL = 0.1      # captions dropped, for classifier-free guidance
CURVE_POINTS = 100       # loss values kept per phase (means over the steps between them)


def architecture(name: str = "shapes") -> dict:
    """The model TOML's sections (the directory it names need not exist yet)."""
    import tomllib

    return tomllib.loads((CONFIGS / "models" / f"{name}.toml").read_text())


class Curve:
    """The mean loss over windows of steps, about CURVE_POINTS of them over `seconds`."""

    def __init__(self):
        self.points, self.window = [], []

    def add(self, step: int, loss: float, elapsed: float, seconds: float):
        self.window.append(loss)
        if elapsed >= (len(self.points) + 1) * seconds / CURVE_POINTS:
            self.points.append({"step": step, "seconds": round(elapsed, 1),
                                "loss": round(float(np.mean(self.window)), 5)})
            self.window = []
            print(f"  step {step}: loss {self.points[-1]['loss']:.4f} ({elapsed:.0f} s)",
                  flush=True)


def pictures(torch, rng, count: int, size: int, device):
    """A batch of pictures in [-1, 1] (B, 3, size, size) on the device, and their captions."""
    params, texts = shapes.sample(rng, count)
    p = {k: torch.from_numpy(np.asarray(v)).to(device) for k, v in params.items()}
    rgb = shapes.draw(p, size, torch).permute(0, 3, 1, 2).float()
    return rgb / 127.5 - 1, texts


def train_vae(torch, vae, rng, args, size, seconds):
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    curve, t0, step = Curve(), time.perf_counter(), 0
    while (elapsed := time.perf_counter() - t0) < seconds:
        x, _ = pictures(torch, rng, args.batch, size, args.device)
        with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16,
                            enabled=args.device != "cpu"):
            posterior = vae.encode(x).latent_dist
            y = vae.decode(posterior.sample()).sample
        y = y.float()
        loss = (y - x).abs().mean() + ((y - x) ** 2).mean() + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        curve.add(step, loss.item(), elapsed, seconds)
    return step, curve.points


def train_unet(torch, unet, text_encoder, vae, tokenize, rng, args, size, seconds, lr=4e-4):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(**{k: v for k, v in architecture()["scheduler"].items()
                             if k in ("num_train_timesteps", "beta_start", "beta_end",
                                      "beta_schedule")})
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    curve, t0, step = Curve(), time.perf_counter(), 0
    factor = vae.config.scaling_factor
    while (elapsed := time.perf_counter() - t0) < seconds:
        x, texts = pictures(torch, rng, args.batch, size, args.device)
        texts = ["" if rng.random() < UNCONDITIONAL else t for t in texts]
        ids = torch.from_numpy(tokenize(texts)).to(args.device)
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.sample() * factor
        noise = torch.randn_like(latents)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(texts),), device=args.device)
        noisy = sched.add_noise(latents, noise, t)
        with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16,
                            enabled=args.device != "cpu"):
            ehs = text_encoder(ids)[0]
            pred = unet(noisy, t, ehs).sample
        loss = ((pred.float() - noise) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        curve.add(step, loss.item(), elapsed, seconds)
    return step, curve.points


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stages.runtime.train",
                                 description="train the default model (configs/models/shapes.toml)")
    ap.add_argument("--out", type=Path, required=True, help="the diffusers directory to write")
    ap.add_argument("--tokenizer", type=Path, required=True,
                    help="a directory with tokenizer.json + tokenizer_config.json")
    ap.add_argument("--minutes", type=float, default=6.0, help="training time in all")
    ap.add_argument("--device", default=None, help="default: cuda if there is one, else cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--resume", type=Path, default=None,
                    help="go on from this directory's weights (the VAE stays as it is)")
    args = ap.parse_args(argv)

    import diffusers
    import torch
    from tokenizers import Tokenizer
    from transformers import CLIPTokenizer

    from stages.runtime import components

    if not (args.tokenizer / "tokenizer.json").is_file():
        print(f"train: {args.tokenizer}: no tokenizer.json; fix: pass the tokenizer stage's "
              f"output (doit tokenizer; build/tiny/model/tokenizer)", file=sys.stderr)
        return 2
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    arch = architecture()
    size = arch["model"]["image_size"]
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    fast = Tokenizer.from_file(str(args.tokenizer / "tokenizer.json"))   # pads/truncates to 77

    def tokenize(texts):
        return np.array([e.ids for e in fast.encode_batch(texts)], np.int64)

    total = args.minutes * 60
    report = {"seed": args.seed, "batch": args.batch, "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda")
              else "cpu", "torch": torch.__version__, "diffusers": diffusers.__version__}
    t0 = time.perf_counter()
    if args.resume:
        def load(component, sub):
            from safetensors.torch import load_file

            module = components.from_config(component, components.read_config(
                component, args.resume / sub))
            weights = next((args.resume / sub).glob("*.safetensors"))
            module.load_state_dict(load_file(str(weights)))
            return module.float().train().to(args.device)

        vae, unet = load("vae_decoder", "vae"), load("unet", "unet")
        text_encoder = load("text_encoder", "text_encoder")
        report["resumed_from"] = json.loads((args.resume / "train.json").read_text())
        lr = 3e-4
    else:
        vae = components.init_random("vae_decoder", arch["vae"], args.seed).train().to(args.device)
        unet = components.init_random("unet", arch["unet"], args.seed + 1).train().to(args.device)
        text_encoder = components.init_random("text_encoder", arch["text_encoder"],
                                              args.seed + 2).train().to(args.device)
        print(f"train: VAE for {total * VAE_SHARE:.0f} s on {args.device}", flush=True)
        steps, curve = train_vae(torch, vae, rng, args, size, total * VAE_SHARE)
        report["vae"] = {"steps": steps, "pictures": steps * args.batch, "curve": curve}
        vae.eval().requires_grad_(False)
        with torch.no_grad():
            x, _ = pictures(torch, rng, 1024, size, args.device)
            std = float(vae.encode(x).latent_dist.sample().std())
        vae.register_to_config(scaling_factor=round(1.0 / std, 5))
        report["vae"]["scaling_factor"] = vae.config.scaling_factor
        print(f"train: latents' std {std:.4f}", flush=True)
        lr = 4e-4
    vae.eval().requires_grad_(False)
    print(f"train: UNet + text encoder for {total - (time.perf_counter() - t0):.0f} s on "
          f"{args.device}", flush=True)
    steps, curve = train_unet(torch, unet, text_encoder, vae, tokenize, rng, args, size,
                              total - (time.perf_counter() - t0), lr)
    report["unet"] = {"steps": steps, "pictures": steps * args.batch, "lr": lr, "curve": curve}
    report["seconds"] = round(time.perf_counter() - t0, 1)

    sched_cfg = {k: v for k, v in arch["scheduler"].items() if k != "class_name"}
    scheduler = getattr(diffusers, arch["scheduler"]["class_name"]).from_config(sched_cfg)
    tokenizer = CLIPTokenizer.from_pretrained(str(args.tokenizer), local_files_only=True)
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(str(args.out))
    (args.out / "train.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"train: wrote {args.out} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
