"""generate: text (and an image) -> PNG with the compiled (llvm) pipeline: the Python reference
runner.

What `doit generate` runs. It starts from the model's directory in dist/ (dist/<model>/llvm,
described by its manifest.json, see stages/package.py): the compiled components run in
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

Image-to-image (init_image, strength), as diffusers' StableDiffusionImg2ImgPipeline:

    clean     = encoder_latents(vae_encoder(image), seed)  # a seeded sample, * scaling_factor
    start     = steps - int(steps * strength)              # samplers.first_iteration
    latents   = scheduler.add_noise(clean, gaussian(seed), timesteps[start])
    ... the loop above over timesteps[start:]

A guidance-free model (its UNet built at batch 1: SD-Turbo, LCM) runs the prompt alone and uses
the UNet's prediction as it is; its manifest's contract carries its own default steps,
guidance and sampler, which every argument left as None takes.

guidance is the classifier-free guidance scale, 0..30: 0 gives the negative-prompt (unconditional)
prediction alone, 1 the prompt's alone, above 1 pushes away from the negative prompt (7.5 is
SD's usual). Unlike diffusers' pipeline, which skips guidance when guidance <= 1, the compiled
pipeline always runs the batch of 2 and applies the formula above.

With compare=True the same image is also made by PyTorch from the same weights
(build/<model>/<component>/weights/), the same tokens, the same initial latents and a fresh
scheduler of the same kind: by diffusers' own StableDiffusionPipeline (or
StableDiffusionImg2ImgPipeline, given the seeded noise) when guidance > 1, and by
the loop above with the torch modules when guidance <= 1 (where the pipeline would drop the
negative prompt). The report gives the PSNR between the two images (float images in [0, 1],
peak 1) and the largest difference of their uint8 pixels.

Schedulers: samplers.SCHEDULERS ("dpm++2m", "pndm", "euler", "ddim", "lms", "dpm++2m-karras",
"euler-a", "lcm"), each diffusers' class over the model's scheduler_config.json
(stages/runtime/samplers.py: the same table the page's coefficients come from).

CLI: python -m stages.runtime.generate --model shapes --prompt "a red circle" --output out.png
     [--negative-prompt ""] [--seed 0] [--steps 20] [--guidance 7.5] [--scheduler dpm++2m]
     [--width 768 --height 512] [--init-image photo.png] [--strength 0.8] [--compare]
     [--dist DIR] [--report report.json]

torch, tvm and diffusers are imported inside the functions: importing this module is free.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import numbers
import os
import sys
import tempfile
import time
from pathlib import Path

from stages.engine.config import DEFAULT_MODEL, ROOT
from stages.engine.errors import BuildError
from stages.runtime import rng
from stages.runtime.contract import DEFAULT_SAMPLER, GUIDANCE, SEED, STEPS, STRENGTH
from stages.runtime.samplers import SCHEDULERS, first_iteration

MIN_STEPS, MAX_STEPS = STEPS["min"], STEPS["max"]
MIN_GUIDANCE, MAX_GUIDANCE = GUIDANCE["min"], GUIDANCE["max"]
MIN_STRENGTH, MAX_STRENGTH = STRENGTH["min"], STRENGTH["max"]
COMPONENTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")


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


def check_given(prompt, negative_prompt, seed, steps, guidance, scheduler, strength) -> None:
    """The settings as given (None: not given, checked at its usual default), refused before a
    model is read or built (`doit generate` on the webgpu target: before its native build)."""
    steps = STEPS["default"] if steps is None else steps
    check_args(prompt, negative_prompt, SEED["default"] if seed is None else seed, steps,
               GUIDANCE["default"] if guidance is None else guidance,
               DEFAULT_SAMPLER if scheduler is None else scheduler)
    if strength is not None:
        check_strength(strength, steps)


def check_strength(strength, steps: int) -> float:
    """Image-to-image's strength, checked against the step count (it must leave a step)."""
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) \
            or not math.isfinite(float(strength)) \
            or not MIN_STRENGTH <= float(strength) <= MAX_STRENGTH:
        raise GenerateError(f"strength must be a number in {MIN_STRENGTH:g}..{MAX_STRENGTH:g}, "
                            f"got {strength!r}; fix: pass --strength between {MIN_STRENGTH:g} "
                            f"and {MAX_STRENGTH:g} ({STRENGTH['default']:g} is usual)")
    if first_iteration(steps, float(strength)) >= steps:
        raise GenerateError(f"strength {float(strength):g} at {steps} steps runs no step "
                            f"(steps x strength < 1); fix: pass --strength of at least "
                            f"{1 / steps:.3g} or more --steps")
    return float(strength)


def read_image(path: Path, size: tuple[int, int]):
    """An image file as the model's input at `size` (width, height): (1, 3, height, width)
    float32 in [-1, 1], and its (height, width, 3) uint8 pixels. An image of another aspect is
    center-cropped to the size's aspect first; one of another size is resized (bicubic). The
    page does the same with a canvas, so only an image already at the size gives both exactly
    the same pixels."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except FileNotFoundError:
        raise GenerateError(f"{path}: no such image; fix: pass --init-image an existing PNG "
                            f"or JPEG file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise GenerateError(f"{path}: not an image that can be read ({e}); fix: pass "
                            f"--init-image a PNG or JPEG file") from None
    w, h = img.size
    width, height = size
    if w * height != h * width:   # the largest centered crop of the size's aspect
        cw, ch = min(w, h * width // height), min(h, w * height // width)
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    if img.size != (width, height):
        img = img.resize((width, height), Image.BICUBIC)
    pixels = np.asarray(img, dtype=np.uint8)
    return image_input(pixels), pixels


def image_input(pixels):
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1]: pixels / 255 * 2 - 1 in float32 (as
    diffusers' image processor; web/src/pipeline.js imageInput)."""
    import numpy as np

    unit = np.asarray(pixels, np.float32) / np.float32(255)
    return np.ascontiguousarray((unit * np.float32(2) - np.float32(1)).transpose(2, 0, 1)[None])


def encoder_latents(moments, seed: int, scaling_factor: float):
    """The VAE encoder's moments (1, 2C, h, w) -> image-to-image's clean latents: a sample of
    the latent distribution, mean + exp(logvar / 2) * noise (logvar clipped to -30..20, as
    diffusers), the noise from the seeded generator's encoder stream (rng.encoder_noise),
    computed in float64 and rounded to float32 once, then times the VAE's scaling factor in
    float32 (web/src/pipeline.js does the same)."""
    import numpy as np

    moments = np.asarray(moments, np.float32)
    c = moments.shape[1] // 2
    mean = moments[:, :c].astype(np.float64)
    std = np.exp(0.5 * np.clip(moments[:, c:].astype(np.float64), -30.0, 20.0))
    sample = (mean + std * rng.encoder_noise(seed, mean.shape)).astype(np.float32)
    return sample * np.float32(scaling_factor)


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
        # build/<model>/ beside dist/: the torch weights (--compare) live there.
        repo = dist_dir.parents[2]
        self.model_dir = Path(model_dir) if model_dir else repo / "build" / self.name
        self.image_size = int(self.index["image_size"])
        self.latent_size = int(self.index["latent_size"])
        # the image sizes the build serves, (width, height), the default first
        self.sizes = [tuple(s) for s in self.index.get("sizes", [[self.image_size] * 2])]
        # 2: classifier-free guidance ([negative prompt, prompt]); 1: a guidance-free model
        self.guidance_batch = int(self.index["inputs"]["unet"]["sample"][0][0])
        self.defaults = {k: o["default"] for k, o in self.index["contract"]["options"].items()}
        self.defaults["scheduler"] = self.index["contract"]["default_sampler"]
        self.scheduler_config = json.loads((dist_dir / self.index["scheduler"]).read_text())
        self._check_dist_file(self.index["scheduler"])

    def size(self, width: int | None, height: int | None) -> tuple[int, int]:
        """The (width, height) to generate at: one the build has (None: the default's side)."""
        default = self.sizes[0]
        size = (default[0] if width is None else width, default[1] if height is None else height)
        if size not in self.sizes:
            have = ", ".join(f"{w}x{h}" for w, h in self.sizes)
            raise GenerateError(f"{self.name} is built for {have}, not {size[0]}x{size[1]}; fix: "
                                f"pass --width/--height of one of those, or add "
                                f"\"{size[0]}x{size[1]}\" to model.sizes in its TOML and rebuild")
        return size

    def variants(self, size: tuple[int, int]) -> dict[str, str]:
        """The float32 variant of each component at `size`, by component."""
        found = {}
        for name, v in self.index["variants"].items():
            if v["precision"] == "float32" and not v.get("features") \
                    and tuple(v.get("size", size)) == tuple(size):
                found.setdefault(v["component"], name)
        missing = [c for c in COMPONENTS if c not in found]
        if missing:
            raise GenerateError(f"{self.dist_dir}: no float32 {missing[0]} at "
                                f"{size[0]}x{size[1]} in manifest.json; fix: run doit build first")
        return found

    def latent_shape(self, size: tuple[int, int]) -> tuple[int, ...]:
        """(1, C, h, w) of the latents at `size`: what its VAE decoder takes."""
        decoder = self.index["variants"][self.variants(size)["vae_decoder"]]
        return tuple(decoder.get("inputs", self.index["inputs"]["vae_decoder"])["latents"][0])

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


def token_ids(tokenizer, prompt: str, negative_prompt: str, batch: int = 2):
    """(batch, T) int32 ids, T the tokenizer's window (its model_max_length, the text encoder's
    positions): with guidance, row 0 the negative prompt (unconditional), row 1 the prompt; a
    guidance-free model (batch 1) has the prompt's row alone."""
    import numpy as np

    texts = [negative_prompt, prompt] if batch == 2 else [prompt]
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="np").input_ids
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

def initial(scheduler, latents0, start: int = 0, clean=None):
    """The loop's first latents (torch float32) and the timesteps it runs. Text-to-image:
    the seed's noise times init_noise_sigma, every timestep. Image-to-image (`clean`, the
    encoder's latents): from iteration `start` on, the noise added to them by add_noise at the
    first of those timesteps, as diffusers' StableDiffusionImg2ImgPipeline."""
    import numpy as np
    import torch

    noise = torch.from_numpy(np.asarray(latents0, np.float32))
    if clean is None:
        return (noise * scheduler.init_noise_sigma).to(torch.float32), scheduler.timesteps
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    timesteps = scheduler.timesteps[start:]
    latents = scheduler.add_noise(torch.from_numpy(np.asarray(clean, np.float32)), noise,
                                  timesteps[:1])
    return latents.to(torch.float32), timesteps


def denoise(unet, ehs, latents, timesteps, scheduler, guidance: float):
    """The denoising loop (module doc) from `latents` over `timesteps` (initial()); returns the
    final latents (numpy).

    unet(sample (B,4,h,w), timestep () float32, ehs) -> numpy (B,4,h,w), B the batch of ehs: 2
    with guidance; 1 for a guidance-free model, whose prediction is used as it is. The
    scheduler math runs in torch float32, as in diffusers."""
    import numpy as np
    import torch

    batch = int(ehs.shape[0])
    for t in timesteps:
        x = scheduler.scale_model_input(latents, t).to(torch.float32).numpy()
        sample = np.ascontiguousarray(np.concatenate([x] * batch, axis=0))
        noise = np.asarray(unet(sample, np.array(float(t), np.float32), ehs), np.float32)
        guided = noise if batch == 1 else \
            noise[0:1] + np.float32(guidance) * (noise[1:2] - noise[0:1])
        latents = scheduler.step(torch.from_numpy(guided), t, latents).prev_sample
    return latents.to(torch.float32).numpy()


class Compiled:
    """The compiled (llvm) components (stages/runtime/component.py) at one image size, with
    their checked params (an extra size's variant: the default size's, checked against that
    variant's manifest)."""

    def __init__(self, model: Model, size: tuple[int, int]):
        import tvm

        from stages.runtime import params
        from stages.runtime.component import Component

        self.components = {}
        for component, name in model.variants(size).items():
            v = model.index["variants"][name]
            lib = model.dist_dir / v["library"]
            params_manifest = v.get("params_manifest", v["manifest"])
            for rel in (v["library"], v["manifest"], params_manifest):
                if not (model.dist_dir / rel).is_file():
                    raise GenerateError(f"{model.dist_dir / rel}: missing; "
                                        f"fix: run doit build first")
            model._check_dist_file(v["library"])
            try:
                self.components[component] = Component(
                    lib, (model.dist_dir / v["params"]).parent, model.dist_dir / params_manifest,
                    tvm.cpu())
            except params.CorruptShard as e:
                raise GenerateError(str(e)) from None

    def __call__(self, component: str, *inputs):
        return self.components[component](*inputs)


_LOADED: dict[tuple, Compiled] = {}


def compiled(model: Model, size: tuple[int, int]) -> Compiled:
    """The loaded components of a dist dir at a size, kept for the next call (keyed by its
    manifest and the size)."""
    key = (str(model.dist_dir.resolve()), hashlib.sha256(model.index_bytes).hexdigest(), size)
    if key not in _LOADED:
        _LOADED.clear()   # one model at a time: a full-size one is gigabytes
        _LOADED[key] = Compiled(model, size)
    return _LOADED[key]


def seeded(sched, seed: int):
    """The scheduler's step noise, if it draws any, from the seeded generator (as the page's)."""
    from stages.runtime.samplers import seeded_noise

    return seeded_noise(sched, lambda k, shape: rng.step_noise(seed, k, shape))


def _run_compiled(model: Model, job: dict, timings: dict):
    import numpy as np

    t0 = time.perf_counter()
    c = compiled(model, job["size"])
    timings["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ehs = c("text_encoder", job["ids"])
    timings["text_encoder_s"] = time.perf_counter() - t0
    clean = None
    if job["init"] is not None:
        t0 = time.perf_counter()
        clean = encoder_latents(c("vae_encoder", job["init"]), job["seed"],
                                model.scaling_factor())
        timings["vae_encoder_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sched = make_scheduler(model, job["scheduler"], job["steps"])
    latents, timesteps = initial(sched, job["latents0"], job["start"], clean)
    with seeded(sched, job["seed"]):
        latents = denoise(lambda x, t, e: c("unet", x, t, e), ehs, latents, timesteps, sched,
                          job["guidance"])
    timings["denoise_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    image = c("vae_decoder", latents / np.float32(model.scaling_factor()))
    timings["vae_decoder_s"] = time.perf_counter() - t0
    return image


@contextlib.contextmanager
def _seeded_pipeline_noise(seed: int):
    """While it lasts, diffusers' image-to-image pipeline draws the seeded generator's noise:
    the initial noise (stream 0) and the encoder's latent sample (the encoder stream)."""
    import torch
    from diffusers.models.autoencoders import vae
    from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_img2img as img2img

    def drawing(draw):
        def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
            return torch.from_numpy(draw(seed, tuple(shape))).to(device=device, dtype=dtype)
        return randn_tensor

    saved = (img2img.randn_tensor, vae.randn_tensor)
    img2img.randn_tensor, vae.randn_tensor = drawing(rng.latents), drawing(rng.encoder_noise)
    try:
        yield
    finally:
        img2img.randn_tensor, vae.randn_tensor = saved


def reference_loras(model: Model, spec: str | None) -> list:
    """The LoRA files the build merged (manifest.json "loras"), from `spec` (FILE[:SCALE],...,
    what the build was given): the reference must load the same bytes at the same scales."""
    from stages.runtime import lora

    built = model.index.get("loras", [])
    if not built and not spec:
        return []
    named = ", ".join(f"{b['file']}:{b['scale']:g}" for b in built) or "none"
    try:
        given = lora.parse(spec) if spec else ()
    except lora.LoraError as e:
        raise GenerateError(str(e)) from None
    if [(g.path.name, _sha256(g.path), g.scale) for g in given] != [
            (b["file"], b["sha256"], b["scale"]) for b in built]:
        raise GenerateError(f"{model.dist_dir}: built with LoRAs {named}, but --compare was "
                            f"given {spec or 'none'}; fix: pass the build's own lora=... "
                            f"(the same files and scales), or rebuild with yours")
    return list(given)


def _run_torch(model: Model, job: dict, use_pipeline: bool | None = None, loras=()):
    """The same image made by PyTorch/diffusers (module doc); returns ((1,3,H,W) image, name).

    use_pipeline: diffusers' StableDiffusionPipeline (or StableDiffusionImg2ImgPipeline), by
    default when it applies the same guidance (guidance > 1, or a guidance-free model), or
    the torch modules in this module's loop (at guidance <= 1 the pipeline would drop the
    negative prompt). loras: the build's (reference_loras), fused by diffusers' loader."""
    import numpy as np
    import torch

    from stages.runtime import components, lora

    modules = {c: components.load(c, model.weights_dir(c)) for c in COMPONENTS
               if c != "vae_encoder"}   # the AutoencoderKL of vae_decoder has both halves
    for c in lora.COMPONENTS:
        mine = [item for item in loras if c in lora.components_of(item.path)]
        if mine:
            lora.fuse_with_diffusers(c, modules[c], mine)
    sched = make_scheduler(model, job["scheduler"], job["steps"])
    guidance, init = job["guidance"], job["init"]
    with torch.no_grad(), seeded(sched, job["seed"]):
        if use_pipeline is None:
            use_pipeline = guidance > 1 or model.guidance_batch == 1
        if use_pipeline:
            import diffusers

            if modules["unet"].config.sample_size is None:   # the image-to-image pipeline asks
                modules["unet"].register_to_config(sample_size=model.latent_size)
            width, height = job["size"]
            parts = dict(vae=modules["vae_decoder"], text_encoder=modules["text_encoder"],
                         tokenizer=model.tokenizer(), unet=modules["unet"], scheduler=sched,
                         safety_checker=None, feature_extractor=None,
                         requires_safety_checker=False)
            common = dict(prompt=job["prompt"], negative_prompt=job["negative_prompt"] or None,
                          num_inference_steps=job["steps"], guidance_scale=guidance,
                          output_type="pt", return_dict=False)
            if init is None:
                pipe = diffusers.StableDiffusionPipeline(**parts)
                run = dict(height=height, width=width,
                           latents=torch.from_numpy(job["latents0"]))
                name = "diffusers.StableDiffusionPipeline"
            else:
                pipe = diffusers.StableDiffusionImg2ImgPipeline(**parts)
                # in [0, 1]: the pipeline's image processor maps it to [-1, 1] itself
                run = dict(image=torch.from_numpy((init + np.float32(1)) / np.float32(2)),
                           strength=job["strength"])
                name = "diffusers.StableDiffusionImg2ImgPipeline"
            pipe.set_progress_bar_config(disable=True)
            with _seeded_pipeline_noise(job["seed"]):
                out = pipe(**common, **run)
            # output_type="pt" is (image / 2 + 0.5).clamp(0, 1): back to [-1, 1] for to_pixels.
            unit = out[0].to(torch.float32).numpy()
            return unit * np.float32(2) - np.float32(1), name
        text = components.wrapper("text_encoder", modules["text_encoder"])
        unet = components.wrapper("unet", modules["unet"])
        vae = components.wrapper("vae_decoder", modules["vae_decoder"])
        ehs = text(torch.from_numpy(job["ids"].astype(np.int64)))
        clean = None
        if init is not None:
            encoder = components.wrapper("vae_encoder", modules["vae_decoder"])
            clean = encoder_latents(encoder(torch.from_numpy(init)).numpy(), job["seed"],
                                    model.scaling_factor())
        latents, timesteps = initial(sched, job["latents0"], job["start"], clean)

        def unet_fn(x, t, e):
            return unet(torch.from_numpy(x), torch.from_numpy(t), e).numpy()

        latents = denoise(unet_fn, ehs, latents, timesteps, sched, guidance)
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

def pixels(model_dist: Path, prompt: str, negative_prompt: str = "", seed: int | None = None,
           steps: int | None = None, guidance: float | None = None,
           scheduler: str | None = None, model_dir: Path | None = None, backend: str = "tvm",
           init_image: Path | None = None, strength: float | None = None,
           width: int | None = None, height: int | None = None):
    """The image as raw (H, W, 3) uint8 pixels, for comparing with the page.

    backend "tvm": the compiled pipeline; "torch": PyTorch/diffusers on the same weights
    (module doc). Arguments as generate().
    """
    if backend not in ("tvm", "torch"):
        raise GenerateError("backend must be 'tvm' or 'torch'; fix: pass backend='tvm' or 'torch'")
    model, job = _job(model_dist, model_dir, prompt, negative_prompt, seed, steps, guidance,
                      scheduler, init_image, strength, width, height)
    image = (_run_compiled(model, job, {}) if backend == "tvm" else _run_torch(model, job)[0])
    return to_pixels(image)


def _job(model_dist, model_dir, prompt, negative_prompt, seed, steps, guidance, scheduler,
         init_image, strength, width=None, height=None) -> tuple[Model, dict]:
    """The model, and the checked arguments with what they make: token ids, initial noise, the
    init image and the iteration image-to-image starts from, the image size. None takes the
    model's default (manifest.json "contract": a few-step model's own steps, guidance and
    sampler; its first size)."""
    # the caller's own values are checked before anything is read (the contract's defaults
    # stand in for the others), then again with the model's defaults
    check_given(prompt, negative_prompt, seed, steps, guidance, scheduler, strength=None)
    model = Model(Path(model_dist), model_dir)
    d = model.defaults
    seed = d["seed"] if seed is None else seed
    steps = d["steps"] if steps is None else steps
    guidance = d["guidance"] if guidance is None else guidance
    scheduler = d["scheduler"] if scheduler is None else scheduler
    seed, steps, guidance = check_args(prompt, negative_prompt, seed, steps, guidance, scheduler)
    size = model.size(width, height)
    if model.guidance_batch == 1 and (guidance > 1 or negative_prompt):
        what = f"--guidance {guidance:g}" if guidance > 1 else "a negative prompt"
        raise GenerateError(f"{model.name} runs without guidance (its UNet is built for one "
                            f"prompt), so {what} has no effect; fix: pass --guidance 0 and no "
                            f"--negative-prompt")
    job = {"prompt": prompt, "negative_prompt": negative_prompt, "seed": seed, "steps": steps,
           "guidance": guidance, "scheduler": scheduler, "init": None, "start": 0,
           "strength": None, "init_pixels": None, "size": size,
           "ids": token_ids(model.tokenizer(), prompt, negative_prompt, model.guidance_batch),
           "latents0": initial_latents(seed, model.latent_shape(size))}
    if init_image is not None:
        strength = check_strength(STRENGTH["default"] if strength is None else strength, steps)
        job["init"], job["init_pixels"] = read_image(init_image, size)
        job["strength"], job["start"] = strength, first_iteration(steps, strength)
    elif strength is not None:
        raise GenerateError("--strength is for image-to-image; fix: also pass --init-image "
                            "PATH, or drop --strength")
    return model, job


def settings_chunks(settings: dict) -> dict[str, str]:
    """The two tEXt chunks a PNG carries its settings in (web/src/png_settings.js writes the
    same): "parameters", the text popular SD front ends read, and "websd", the settings as
    JSON (ASCII, non-ASCII characters escaped) that the page's form takes back."""
    def show(v):
        return f"{v:g}" if isinstance(v, float) else str(v)

    lines = [settings["prompt"]]
    if settings["negativePrompt"]:
        lines.append(f"Negative prompt: {settings['negativePrompt']}")
    fields = [("Steps", "steps"), ("Sampler", "scheduler"), ("CFG scale", "guidance"),
              ("Seed", "seed"), ("Size", "size"), ("Model", "model"),
              ("Denoising strength", "strength")]
    lines.append(", ".join(f"{label}: {show(settings[k])}" for label, k in fields
                           if k in settings))
    text = "\n".join(lines)
    # tEXt is Latin-1: what it cannot hold is "?" there (the JSON keeps it, escaped)
    return {"parameters": "".join(c if ord(c) < 256 else "?" for c in text),
            "websd": json.dumps(settings, separators=(",", ":"), ensure_ascii=True)}


def write_png(path: Path, pixels, settings: dict | None = None) -> None:
    """An (H, W, 3) uint8 array as an RGB PNG, atomically (temp file in the same dir + rename),
    with its settings' text chunks (settings_chunks) when given."""
    from PIL import Image, PngImagePlugin

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        info = PngImagePlugin.PngInfo()
        for key, text in settings_chunks(settings).items() if settings else ():
            info.add_text(key, text)
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(pixels, "RGB").save(f, format="PNG", pnginfo=info)
        os.chmod(tmp, 0o644)   # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def generate(model_dist: Path, prompt: str, output: Path, negative_prompt: str = "",
             seed: int | None = None, steps: int | None = None, guidance: float | None = None,
             scheduler: str | None = None, compare: bool = False,
             model_dir: Path | None = None, init_image: Path | None = None,
             strength: float | None = None, loras: str | None = None,
             width: int | None = None, height: int | None = None) -> dict:
    """Make one image with the compiled pipeline of `model_dist` and write it to `output` (PNG).

    model_dist: dist/<model>/llvm (a `doit build` output). prompt / negative_prompt: any text;
    "" works, longer than 77 tokens is truncated. seed: uint32 (0..2**32-1), drawn by
    stages/runtime/rng.py. steps, guidance, strength: ranges in stages/runtime/contract.py;
    None takes the model's default (its manifest's contract). scheduler: a name in
    stages/runtime/samplers.py SCHEDULERS. width, height: one of the build's sizes (manifest
    "sizes"; None: the default's). init_image: image-to-image from this PNG/JPEG (center-cropped
    to the size's aspect, resized to it), at `strength`. compare: also make
    the image with PyTorch/diffusers and report the PSNR. model_dir: build/<model> (default:
    beside dist/), for the torch weights of compare. loras: FILE[:SCALE],... the build merged
    (manifest.json "loras"), for compare's reference.

    Returns a JSON-able report: the arguments, output path, image size, tokens used, timings
    in seconds and, with compare, "psnr_db", "max_abs_pixel_diff", "reference" and
    "reference_output" (the torch image, written beside output as <stem>.torch.png).
    """
    timings: dict = {}
    t0 = time.perf_counter()
    model, job = _job(model_dist, model_dir, prompt, negative_prompt, seed, steps, guidance,
                      scheduler, init_image, strength, width, height)
    reference = reference_loras(model, loras) if compare else []
    image = _run_compiled(model, job, timings)
    ours = to_pixels(image)
    output = Path(output)
    settings = {"prompt": prompt, "negativePrompt": negative_prompt,
                "guidance": job["guidance"], "steps": job["steps"], "seed": job["seed"],
                "scheduler": job["scheduler"],
                **({"strength": job["strength"]} if init_image is not None else {}),
                "model": model.name, "size": f"{ours.shape[1]}x{ours.shape[0]}"}
    write_png(output, ours, settings)
    row, end = job["ids"][-1].tolist(), model.tokenizer().eos_token_id
    sched = make_scheduler(model, job["scheduler"], job["steps"])
    report = {
        "model": model.name, "dist": str(model.dist_dir), "output": str(output),
        "prompt": prompt, "negative_prompt": negative_prompt, "seed": job["seed"],
        "steps": job["steps"], "guidance": job["guidance"], "scheduler": job["scheduler"],
        **({"init_image": str(init_image), "strength": job["strength"]}
           if init_image is not None else {}),
        "image_size": list(ours.shape), "unet_batch": model.guidance_batch,
        "prompt_tokens": (row.index(end) + 1) if end in row else len(row),
        "unet_calls": len(sched.timesteps) - job["start"],
        "loras": model.index.get("loras", []),
        "seconds": timings,
    }
    if compare:
        t1 = time.perf_counter()
        theirs, reference = _run_torch(model, job, loras=reference)
        timings["reference_s"] = time.perf_counter() - t1
        ref_pixels = to_pixels(theirs)
        ref_path = output.with_name(output.stem + ".torch.png")
        write_png(ref_path, ref_pixels)
        import numpy as np

        report.update({
            "reference": reference, "reference_output": str(ref_path),
            "psnr_db": psnr(unit_image(image), unit_image(theirs)),
            "pixel_psnr_db": psnr(ours, ref_pixels, 255.0),
            "max_abs_pixel_diff": int(np.abs(ours.astype(np.int16)
                                             - ref_pixels.astype(np.int16)).max()),
        })
    timings["total_s"] = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None, prog: str = "python -m stages.runtime.generate") -> int:
    p = argparse.ArgumentParser(prog=prog,
                                description="text (and an image) -> PNG with the compiled "
                                            "(llvm) pipeline")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model name: dist/<model>/llvm (default {DEFAULT_MODEL})")
    p.add_argument("--dist", type=Path, default=None,
                   help="the dist dir itself (default dist/<model>/llvm in the repo)")
    p.add_argument("--prompt", default="", help="text (default empty)")
    p.add_argument("--negative-prompt", default="", help="the unconditional text (default empty)")
    p.add_argument("--seed", type=int, default=None,
                   help=f"0..{rng.SEED_MAX} (default {SEED['default']})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"{MIN_STEPS}..{MAX_STEPS} (default: the model's, usually "
                        f"{STEPS['default']})")
    p.add_argument("--guidance", type=float, default=None,
                   help=f"classifier-free guidance scale {MIN_GUIDANCE:g}..{MAX_GUIDANCE:g} "
                        f"(default: the model's, usually {GUIDANCE['default']:g})")
    # checked by generate(), which names the fix in one line (argparse's choices print usage)
    p.add_argument("--scheduler", default=None,
                   help=f"{', '.join(SCHEDULERS)} (default: the model's, usually "
                        f"{DEFAULT_SAMPLER})")
    p.add_argument("--width", type=int, default=None,
                   help="image width: one of the build's sizes (default: its first)")
    p.add_argument("--height", type=int, default=None,
                   help="image height: one of the build's sizes (default: its first)")
    p.add_argument("--init-image", type=Path, default=None,
                   help="image-to-image: start from this PNG or JPEG (center-cropped, resized "
                        "to the image size)")
    p.add_argument("--strength", type=float, default=None,
                   help=f"image-to-image: how much of the schedule runs over the image, "
                        f"{MIN_STRENGTH:g}..{MAX_STRENGTH:g} (default {STRENGTH['default']:g})")
    p.add_argument("--output", type=Path, default=None,
                   help="PNG path (default out/<model>-<seed>.png)")
    p.add_argument("--compare", action="store_true",
                   help="also run PyTorch/diffusers on the same weights and latents; report PSNR")
    p.add_argument("--lora", default=None,
                   help="FILE[:SCALE],...: the LoRAs the build merged, for --compare's reference")
    p.add_argument("--report", type=Path, default=None, help="also write the report as JSON here")
    args = p.parse_args(argv)
    dist = args.dist or ROOT / "dist" / args.model / "llvm"
    seed_name = SEED["default"] if args.seed is None else args.seed
    output = args.output or ROOT / "out" / f"{args.model}-{seed_name}.png"
    try:
        report = generate(dist, args.prompt, output, negative_prompt=args.negative_prompt,
                          seed=args.seed, steps=args.steps, guidance=args.guidance,
                          scheduler=args.scheduler, compare=args.compare,
                          init_image=args.init_image, strength=args.strength,
                          loras=args.lora, width=args.width, height=args.height)
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
