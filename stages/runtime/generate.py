"""generate: text -> PNG with the compiled (llvm) pipeline: the Python reference runner.

What `doit generate` runs. It starts from the model's directory in dist/ (dist/<model>/llvm,
described by its manifest.json, see stages/package.py): the three compiled components run in
TVM's VM with their emitted params (every shard checked against the manifest, stages/runtime/params.py);
the scheduler is diffusers' own, built from the model's scheduler_config.json; the initial
latents come from the product's seeded generator (stages/runtime/rng.py), the one the page uses.

The loop, for one image (classifier-free guidance, batch 2 = [negative prompt, prompt]):

    ids       = tokenizer([negative_prompt, prompt])       # padded / truncated to 77 tokens
    ehs       = text_encoder(ids)                          # (2, 77, D)
    latents   = gaussian(seed, 4*h*w).reshape(1, 4, h, w) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x       = scheduler.scale_model_input(latents, t)
        e       = unet([x, x], float32(t), ehs)            # (2, 4, h, w)
        guided  = e[0] + guidance * (e[1] - e[0])
        latents = scheduler.step(guided, t, latents).prev_sample
    image     = vae_decoder(latents / scaling_factor)      # (1, 3, H, W), about [-1, 1]
    pixels    = floor(clip(image / 2 + 0.5, 0, 1) * 255 + 0.5)   # uint8, H x W x 3

Rounding is half-up (what JavaScript's Math.round does for these non-negative values), so the
page can reproduce the pixels exactly.

guidance is the classifier-free guidance scale, 0..30: 0 gives the negative-prompt (unconditional)
prediction alone, 1 the prompt's alone, above 1 pushes away from the negative prompt (7.5 is
SD's usual). Unlike diffusers' pipeline, which skips guidance when guidance <= 1, the compiled
pipeline always runs the batch of 2 and applies the formula above.

With compare=True the same image is also made by PyTorch from the same weights
(build/<model>/<component>/weights/), the same tokens, the same initial latents and a fresh
scheduler of the same kind: by diffusers' own StableDiffusionPipeline when guidance > 1, and by
the loop above with the torch modules when guidance <= 1 (where the pipeline would drop the
negative prompt). The report gives the PSNR between the two images (float images in [0, 1],
peak 1) and the largest difference of their uint8 pixels.

Schedulers: "dpm++2m" (DPMSolverMultistepScheduler, dpmsolver++, order 2), "pndm"
(PNDMScheduler, skip_prk_steps) and "euler" (EulerDiscreteScheduler), each over the model's
scheduler_config.json (stages/runtime/samplers.py: the same table the page's coefficients come from).

CLI: python -m stages.runtime.generate --model tiny --prompt "a photo of a cat" --output out.png
     [--negative-prompt ""] [--seed 0] [--steps 20] [--guidance 7.5] [--scheduler dpm++2m]
     [--compare] [--dist DIR] [--report report.json]

torch, tvm and diffusers are imported inside the functions: importing this module is free.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import numbers
import os
import sys
import tempfile
import time
from pathlib import Path

from stages.engine.config import ROOT
from stages.engine.errors import BuildError
from stages.runtime import rng
from stages.runtime.contract import DEFAULT_SAMPLER, GUIDANCE, SEED, STEPS
from stages.runtime.samplers import SCHEDULERS

MIN_STEPS, MAX_STEPS = STEPS["min"], STEPS["max"]
MIN_GUIDANCE, MAX_GUIDANCE = GUIDANCE["min"], GUIDANCE["max"]
COMPONENTS = ("text_encoder", "unet", "vae_decoder")


class GenerateError(BuildError, ValueError):
    """A bad argument or a missing/stale build, worded as one line that names the fix."""


# --- arguments --------------------------------------------------------------------------------

def check_args(prompt, negative_prompt, seed, steps, guidance, scheduler) -> tuple[int, int, float]:
    """Validate the generation arguments; return (seed, steps, guidance) normalized."""
    for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if not isinstance(value, str):
            raise GenerateError(f"{name} must be a string, not {type(value).__name__}; "
                                f"fix: pass text (\"\" is allowed)")
    try:
        seed = rng.check_seed(seed)
    except (TypeError, ValueError) as e:
        raise GenerateError(f"{e}; fix: pass --seed between 0 and {rng.SEED_MAX}") from None
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) \
            or not MIN_STEPS <= int(steps) <= MAX_STEPS:
        raise GenerateError(f"steps must be an integer in {MIN_STEPS}..{MAX_STEPS}, got {steps!r}; "
                            f"fix: pass --steps between {MIN_STEPS} and {MAX_STEPS} "
                            f"({STEPS['default']} is usual)")
    if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) \
            or not math.isfinite(float(guidance)) \
            or not MIN_GUIDANCE <= float(guidance) <= MAX_GUIDANCE:
        raise GenerateError(f"guidance must be a number in {MIN_GUIDANCE:g}..{MAX_GUIDANCE:g}, got "
                            f"{guidance!r}; fix: pass --guidance between {MIN_GUIDANCE:g} and "
                            f"{MAX_GUIDANCE:g} ({GUIDANCE['default']:g} is usual)")
    if scheduler not in SCHEDULERS:
        raise GenerateError(f"unknown scheduler {scheduler!r}; fix: pass --scheduler one of "
                            f"{', '.join(SCHEDULERS)}")
    return seed, int(steps), float(guidance)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Model:
    """dist/<model>/llvm read and checked: its index, where its build/ side is, and the files
    generate needs beyond the compiled components (tokenizer, scheduler config, VAE scale)."""

    def __init__(self, dist_dir: Path, model_dir: Path | None = None):
        dist_dir = Path(dist_dir).resolve()
        index_path = dist_dir / "manifest.json"
        if not index_path.is_file():
            raise GenerateError(f"{dist_dir}: no manifest.json (the model is not built); "
                                f"fix: run doit build first")
        self.dist_dir = dist_dir
        self.index_bytes = index_path.read_bytes()
        self.index = json.loads(self.index_bytes)
        self.name = self.index["model"]
        if self.index.get("target") != "llvm":
            raise GenerateError(f"{dist_dir}: target {self.index.get('target')!r}; generate runs "
                                f"the llvm build; fix: pass dist/{self.name}/llvm "
                                f"(doit build with the llvm target)")
        for component in COMPONENTS:
            if component not in self.index["variants"]:
                raise GenerateError(f"{dist_dir}: no float32 {component} in manifest.json; "
                                    f"fix: run doit build first")
        # build/<model>/ beside dist/: the torch weights (--compare) live there.
        repo = dist_dir.parents[2]
        self.model_dir = Path(model_dir) if model_dir else repo / "build" / self.name
        self.image_size = int(self.index["image_size"])
        self.latent_size = int(self.index["latent_size"])
        self.latent_shape = (1, *self.index["inputs"]["vae_decoder"]["latents"][0][1:])
        self.scheduler_config = json.loads((dist_dir / self.index["scheduler"]).read_text())
        self._check_dist_file(self.index["scheduler"])

    def _check_dist_file(self, rel: str) -> None:
        entry = self.index["files"].get(rel)
        if entry is None or _sha256(self.dist_dir / rel) != entry["sha256"]:
            raise GenerateError(f"{self.dist_dir / rel}: does not match manifest.json (sha256); "
                                f"fix: run doit build first")

    def weights_dir(self, component: str) -> Path:
        path = self.model_dir / component / "weights"
        if not (path / "model.safetensors").is_file():
            raise GenerateError(f"{path}: no torch weights; fix: run doit build first "
                                f"(or pass model_dir=build/{self.name})")
        return path

    def tokenizer(self):
        """The model's CLIP tokenizer: tokenizer.json + tokenizer_config.json in dist (the files
        the page reads), each checked against manifest.json first."""
        import shutil
        import tempfile

        from transformers import CLIPTokenizer

        names = (self.index["tokenizer"], self.index["tokenizer_config"])
        for rel in names:
            self._check_dist_file(rel)
        # NOTE: from_pretrained reads a directory; give it only the tokenizer's two files
        with tempfile.TemporaryDirectory() as tmp:
            for rel in names:
                shutil.copyfile(self.dist_dir / rel, Path(tmp) / Path(rel).name)
            return CLIPTokenizer.from_pretrained(tmp, local_files_only=True)

    def scaling_factor(self) -> float:
        """The VAE's latent scaling factor (diffusers divides latents by it before decoding)."""
        if "vae_scaling_factor" in self.index:
            return float(self.index["vae_scaling_factor"])
        config = json.loads((self.weights_dir("vae_decoder") / "config.json").read_text())
        return float(config["scaling_factor"])


def token_ids(tokenizer, prompt: str, negative_prompt: str):
    """(2, T) int32 ids, T the tokenizer's window (its model_max_length, the text encoder's
    positions): row 0 the negative prompt (unconditional), row 1 the prompt."""
    import numpy as np

    ids = tokenizer([negative_prompt, prompt], padding="max_length",
                    max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="np").input_ids
    return np.ascontiguousarray(ids, dtype=np.int32)


def initial_latents(seed: int, shape):
    """The unscaled initial latents (float32, NCHW) of a seed: the page draws the same ones."""
    return rng.latents(seed, tuple(shape))


def make_scheduler(model: Model, name: str, steps: int):
    from stages.runtime.samplers import make

    return make(model.scheduler_config, name, steps)


def to_pixels(image):
    """(1, 3, H, W) float image in about [-1, 1] -> (H, W, 3) uint8, rounding half up."""
    import numpy as np

    unit = np.clip(np.asarray(image, np.float32)[0] / np.float32(2) + np.float32(0.5), 0, 1)
    quantized = np.floor(unit * np.float32(255) + np.float32(0.5)).astype(np.uint8)
    return quantized.transpose(1, 2, 0).copy()


# --- the loop, shared by the compiled pipeline and the torch one --------------------------------

def denoise(unet, ehs, latents0, scheduler, guidance: float):
    """The denoising loop (module doc); returns the final latents (numpy).

    unet(sample (2,4,h,w), timestep () float32, ehs) -> numpy (2,4,h,w); the scheduler math
    runs in torch float32, as in diffusers."""
    import numpy as np
    import torch

    latents = torch.from_numpy(np.asarray(latents0, np.float32)) * scheduler.init_noise_sigma
    latents = latents.to(torch.float32)
    for t in scheduler.timesteps:
        x = scheduler.scale_model_input(latents, t).to(torch.float32).numpy()
        sample = np.ascontiguousarray(np.concatenate([x, x], axis=0))
        noise = np.asarray(unet(sample, np.array(float(t), np.float32), ehs), np.float32)
        guided = noise[0:1] + np.float32(guidance) * (noise[1:2] - noise[0:1])
        latents = scheduler.step(torch.from_numpy(guided), t, latents).prev_sample
    return latents.to(torch.float32).numpy()


class Compiled:
    """The three compiled (llvm) components (stages/runtime/component.py), with their checked
    params."""

    def __init__(self, model: Model):
        import tvm

        from stages.runtime import params
        from stages.runtime.component import Component

        self.components = {}
        for component in COMPONENTS:
            v = model.index["variants"][component]
            lib = model.dist_dir / v["library"]
            for rel in (v["library"], v["manifest"]):
                if not (model.dist_dir / rel).is_file():
                    raise GenerateError(f"{model.dist_dir / rel}: missing; "
                                        f"fix: run doit build first")
            model._check_dist_file(v["library"])
            try:
                self.components[component] = Component(
                    lib, (model.dist_dir / v["params"]).parent, model.dist_dir / v["manifest"],
                    tvm.cpu())
            except params.CorruptShard as e:
                raise GenerateError(str(e)) from None

    def __call__(self, component: str, *inputs):
        return self.components[component](*inputs)


_LOADED: dict[tuple[str, str], Compiled] = {}


def compiled(model: Model) -> Compiled:
    """The loaded components of a dist dir, kept for the next call (keyed by its manifest)."""
    key = (str(model.dist_dir.resolve()), hashlib.sha256(model.index_bytes).hexdigest())
    if key not in _LOADED:
        _LOADED.clear()   # one model at a time: a full-size one is gigabytes
        _LOADED[key] = Compiled(model)
    return _LOADED[key]


def seeded(sched, seed: int):
    """The scheduler's step noise, if it draws any, from the seeded generator (as the page's)."""
    from stages.runtime.samplers import seeded_noise

    return seeded_noise(sched, lambda k, shape: rng.step_noise(seed, k, shape))


def _run_compiled(model: Model, ids, latents0, scheduler_name, steps, guidance, timings, seed):
    t0 = time.perf_counter()
    c = compiled(model)
    timings["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ehs = c("text_encoder", ids)
    timings["text_encoder_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sched = make_scheduler(model, scheduler_name, steps)
    with seeded(sched, seed):
        latents = denoise(lambda x, t, e: c("unet", x, t, e), ehs, latents0, sched, guidance)
    timings["denoise_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    import numpy as np

    image = c("vae_decoder", latents / np.float32(model.scaling_factor()))
    timings["vae_decoder_s"] = time.perf_counter() - t0
    return image


def _run_torch(model: Model, prompt, negative_prompt, ids, latents0, scheduler_name, steps,
               guidance, seed: int, use_pipeline: bool | None = None):
    """The same image made by PyTorch/diffusers (module doc); returns ((1,3,H,W) image, name).

    use_pipeline: diffusers' StableDiffusionPipeline (default when guidance > 1, the only case
    where it applies the same guidance) or the torch modules in denoise()."""
    import numpy as np
    import torch

    from stages.runtime import components

    modules = {c: components.load(c, model.weights_dir(c)) for c in COMPONENTS}
    sched = make_scheduler(model, scheduler_name, steps)
    if use_pipeline is None:
        use_pipeline = guidance > 1
    with torch.no_grad(), seeded(sched, seed):
        if use_pipeline:
            from diffusers import StableDiffusionPipeline

            pipe = StableDiffusionPipeline(
                vae=modules["vae_decoder"], text_encoder=modules["text_encoder"],
                tokenizer=model.tokenizer(), unet=modules["unet"], scheduler=sched,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
            out = pipe(prompt=prompt, negative_prompt=negative_prompt,
                       height=model.image_size, width=model.image_size,
                       num_inference_steps=steps, guidance_scale=guidance,
                       latents=torch.from_numpy(latents0), output_type="pt", return_dict=False)
            # output_type="pt" is (image / 2 + 0.5).clamp(0, 1): back to [-1, 1] for to_pixels.
            unit = out[0].to(torch.float32).numpy()
            return unit * np.float32(2) - np.float32(1), "diffusers.StableDiffusionPipeline"
        text = components.wrapper("text_encoder", modules["text_encoder"])
        unet = components.wrapper("unet", modules["unet"])
        vae = components.wrapper("vae_decoder", modules["vae_decoder"])
        ehs = text(torch.from_numpy(ids.astype(np.int64)))

        def unet_fn(x, t, e):
            return unet(torch.from_numpy(x), torch.from_numpy(t), e).numpy()

        latents = denoise(unet_fn, ehs, latents0, sched, guidance)
        image = vae(torch.from_numpy(latents / np.float32(model.scaling_factor()))).numpy()
        return image, "torch modules (diffusers schedulers, this loop)"


def unit_image(image):
    """A (1, 3, H, W) image in about [-1, 1] as float64 in [0, 1] (before quantizing)."""
    import numpy as np

    return np.clip(np.asarray(image, np.float64) / 2 + 0.5, 0, 1)


def psnr(a, b, peak: float = 1.0) -> float:
    """PSNR in dB of two images on the same scale (inf when equal)."""
    import numpy as np

    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


# --- the API ------------------------------------------------------------------------------------

def pixels(model_dist: Path, prompt: str, negative_prompt: str = "",
           seed: int = SEED["default"], steps: int = STEPS["default"],
           guidance: float = GUIDANCE["default"], scheduler: str = DEFAULT_SAMPLER,
           model_dir: Path | None = None, backend: str = "tvm"):
    """The image as raw (H, W, 3) uint8 pixels, for comparing with the page.

    backend "tvm": the compiled pipeline; "torch": PyTorch/diffusers on the same weights
    (module doc). Arguments as generate().
    """
    return _images(model_dist, prompt, negative_prompt, seed, steps, guidance, scheduler,
                   model_dir, compiled_run=backend == "tvm", torch_run=backend == "torch",
                   timings={})[0 if backend == "tvm" else 1]["pixels"]


def _images(model_dist, prompt, negative_prompt, seed, steps, guidance, scheduler, model_dir,
            compiled_run: bool, torch_run: bool, timings: dict):
    seed, steps, guidance = check_args(prompt, negative_prompt, seed, steps, guidance, scheduler)
    if not (compiled_run or torch_run):
        raise GenerateError("backend must be 'tvm' or 'torch'; fix: pass backend='tvm' or 'torch'")
    model = Model(Path(model_dist), model_dir)
    tokenizer = model.tokenizer()
    ids = token_ids(tokenizer, prompt, negative_prompt)
    latents0 = initial_latents(seed, model.latent_shape)
    ours = theirs = None
    if compiled_run:
        image = _run_compiled(model, ids, latents0, scheduler, steps, guidance, timings, seed)
        ours = {"image": image, "pixels": to_pixels(image)}
    if torch_run:
        t0 = time.perf_counter()
        image, reference = _run_torch(model, prompt, negative_prompt, ids, latents0, scheduler,
                                      steps, guidance, seed)
        timings["reference_s"] = time.perf_counter() - t0
        theirs = {"image": image, "pixels": to_pixels(image), "reference": reference}
    return ours, theirs, model, ids


def write_png(path: Path, pixels) -> None:
    """An (H, W, 3) uint8 array as an RGB PNG, atomically (temp file in the same dir + rename)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(pixels, "RGB").save(f, format="PNG")
        os.chmod(tmp, 0o644)   # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def generate(model_dist: Path, prompt: str, output: Path, negative_prompt: str = "",
             seed: int = SEED["default"], steps: int = STEPS["default"],
             guidance: float = GUIDANCE["default"], scheduler: str = DEFAULT_SAMPLER,
             compare: bool = False,
             model_dir: Path | None = None) -> dict:
    """Make one image with the compiled pipeline of `model_dist` and write it to `output` (PNG).

    model_dist: dist/<model>/llvm (a `doit build` output). prompt / negative_prompt: any text;
    "" works, longer than 77 tokens is truncated. seed: uint32 (0..2**32-1), drawn by
    stages/runtime/rng.py. steps, guidance: stages/runtime/contract.py. scheduler: "dpm++2m", "pndm"
    or "euler". compare: also make the image with PyTorch/diffusers and report the PSNR.
    model_dir: build/<model> (default: beside dist/), for the torch weights of compare.

    Returns a JSON-able report: the arguments, output path, image size, tokens used, timings
    in seconds and, with compare, "psnr_db", "max_abs_pixel_diff", "reference" and
    "reference_output" (the torch image, written beside output as <stem>.torch.png).
    """
    timings: dict = {}
    t0 = time.perf_counter()
    ours, theirs, model, ids = _images(model_dist, prompt, negative_prompt, seed, steps, guidance,
                                       scheduler, model_dir, compiled_run=True,
                                       torch_run=bool(compare), timings=timings)
    output = Path(output)
    write_png(output, ours["pixels"])
    row, end = ids[1].tolist(), model.tokenizer().eos_token_id
    report = {
        "model": model.name, "dist": str(model.dist_dir), "output": str(output),
        "prompt": prompt, "negative_prompt": negative_prompt, "seed": int(seed),
        "steps": int(steps), "guidance": float(guidance), "scheduler": scheduler,
        "image_size": list(ours["pixels"].shape),
        "prompt_tokens": (row.index(end) + 1) if end in row else len(row),
        "unet_calls": len(make_scheduler(model, scheduler, steps).timesteps),
        "seconds": timings,
    }
    if compare:
        ref_path = output.with_name(output.stem + ".torch.png")
        write_png(ref_path, theirs["pixels"])
        import numpy as np

        report.update({
            "reference": theirs["reference"], "reference_output": str(ref_path),
            "psnr_db": psnr(unit_image(ours["image"]), unit_image(theirs["image"])),
            "pixel_psnr_db": psnr(ours["pixels"], theirs["pixels"], 255.0),
            "max_abs_pixel_diff": int(np.abs(ours["pixels"].astype(np.int16)
                                             - theirs["pixels"].astype(np.int16)).max()),
        })
    timings["total_s"] = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None, prog: str = "python -m stages.runtime.generate") -> int:
    p = argparse.ArgumentParser(prog=prog,
                                description="text -> PNG with the compiled (llvm) pipeline")
    p.add_argument("--model", default="tiny", help="model name: dist/<model>/llvm (default tiny)")
    p.add_argument("--dist", type=Path, default=None,
                   help="the dist dir itself (default dist/<model>/llvm in the repo)")
    p.add_argument("--prompt", default="", help="text (default empty)")
    p.add_argument("--negative-prompt", default="", help="the unconditional text (default empty)")
    p.add_argument("--seed", type=int, default=SEED["default"],
                   help=f"0..{rng.SEED_MAX} (default {SEED['default']})")
    p.add_argument("--steps", type=int, default=STEPS["default"],
                   help=f"{MIN_STEPS}..{MAX_STEPS} (default {STEPS['default']})")
    p.add_argument("--guidance", type=float, default=GUIDANCE["default"],
                   help=f"classifier-free guidance scale {MIN_GUIDANCE:g}..{MAX_GUIDANCE:g} "
                        f"(default {GUIDANCE['default']:g})")
    # checked by generate(), which names the fix in one line (argparse's choices print usage)
    p.add_argument("--scheduler", default=DEFAULT_SAMPLER,
                   help=f"{', '.join(SCHEDULERS)} (default {DEFAULT_SAMPLER})")
    p.add_argument("--output", type=Path, default=None,
                   help="PNG path (default out/<model>-<seed>.png)")
    p.add_argument("--compare", action="store_true",
                   help="also run PyTorch/diffusers on the same weights and latents; report PSNR")
    p.add_argument("--report", type=Path, default=None, help="also write the report as JSON here")
    args = p.parse_args(argv)
    dist = args.dist or ROOT / "dist" / args.model / "llvm"
    output = args.output or ROOT / "out" / f"{args.model}-{args.seed}.png"
    try:
        report = generate(dist, args.prompt, output, negative_prompt=args.negative_prompt,
                          seed=args.seed, steps=args.steps, guidance=args.guidance,
                          scheduler=args.scheduler, compare=args.compare)
    except GenerateError as e:
        print(f"generate: {e}", file=sys.stderr)
        return 2
    # JSON has no Infinity: equal images (PSNR inf) are written as "inf".
    text = json.dumps({k: ("inf" if isinstance(v, float) and math.isinf(v) else v)
                       for k, v in report.items()}, indent=1)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
