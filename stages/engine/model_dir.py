"""A local diffusers model directory read as model-config sections, before anything is built.

`doit build path=DIR` needs no hand-written config: the architecture comes from the config.json
files save_pretrained wrote (unet/, text_encoder/, vae/), the scheduler from
scheduler/scheduler_config.json, the image size from the UNet's sample size. The result has the
sections of configs/models/<model>.toml ([model], [text_encoder], [unet], [vae], [scheduler]),
so a TOML given with model= overrides it key by key (stages/engine/config.py).

Everything here is plain JSON: a directory that is not an SD 1.x / 2.x text-to-image model is
refused in one line naming the file, what is wrong and the fix, while dodo.py loads, before any
stage runs. Nothing here imports torch, diffusers or transformers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# What the compiled pipeline runs: the blocks of SD 1.x / 2.x (and its fine-tunes).
SUPPORTED = {
    ("unet", "down_block_types"): ("CrossAttnDownBlock2D", "DownBlock2D"),
    ("unet", "up_block_types"): ("CrossAttnUpBlock2D", "UpBlock2D"),
    ("unet", "mid_block_type"): ("UNetMidBlock2DCrossAttn",),
    ("vae", "down_block_types"): ("DownEncoderBlock2D",),
    ("vae", "up_block_types"): ("UpDecoderBlock2D",),
}
# UNet options that add inputs the text-to-image pipeline does not feed (class labels, SDXL's
# added time ids, LCM's guidance embedding, image embeddings): set, they are refused by name.
UNSUPPORTED_UNET_INPUTS = ("class_embed_type", "num_class_embeds", "addition_embed_type",
                           "time_cond_proj_dim", "encoder_hid_dim")
# The classes model_index.json may name for each part.
CLASSES = {"text_encoder": ("CLIPTextModel",), "unet": ("UNet2DConditionModel",),
           "vae": ("AutoencoderKL",), "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast")}
# Keys the build reads that configs saved by older diffusers may lack: the library's defaults.
DEFAULTS = {"vae": {"scaling_factor": 0.18215}}
# Keys of a config.json that describe the file, not the model.
METADATA = ("architectures", "transformers_version", "torch_dtype", "dtype", "model_type")
# A CLIP tokenizer is one tokenizer.json, or its vocabulary and merges.
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))
SINGLE_FILE = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
LAYOUT = ("fix: point path= at a whole diffusers model directory (what save_pretrained writes: "
          "model_index.json, unet/, text_encoder/, vae/, tokenizer/, scheduler/)")


class ModelDirError(Exception):
    """What is wrong with a model directory, in one line with its fix."""


def model_name(path: Path) -> str:
    """The model's default name: the directory's, in the characters dist/ paths allow."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).resolve().name).strip("-.")
    return name or "model"


def _json(path: Path) -> dict:
    if not path.is_file():
        if not path.parent.is_dir():
            raise ModelDirError(f"model directory {path.parent.parent}: no {path.parent.name}/ "
                                f"folder; {LAYOUT}")
        raise ModelDirError(f"{path}: missing; {LAYOUT}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelDirError(f"{path}: not valid JSON ({e}); fix: restore the file from the "
                            f"model's source") from None
    if not isinstance(data, dict):
        raise ModelDirError(f"{path}: not a JSON object; fix: restore the file from the "
                            f"model's source")
    return data


def _arch(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_") and k not in METADATA}


def check_single_file(path: Path) -> None:
    """A checkpoint file where a directory belongs (or a folder holding only one): diffusers
    cannot load it here without the hub's config files, so say how to make the directory."""
    files = [path] if path.is_file() else (
        sorted(p for p in path.iterdir() if p.suffix in SINGLE_FILE) if path.is_dir()
        and not (path / "model_index.json").exists() else [])
    if files and files[0].suffix in SINGLE_FILE:
        raise ModelDirError(
            f"{files[0]}: a single-file checkpoint, not a diffusers model directory; fix: convert "
            f"it once where diffusers can reach the model's config files "
            f"(StableDiffusionPipeline.from_single_file(\"{files[0]}\").save_pretrained(\"DIR\")) "
            f"and pass path=DIR")


def read(path: Path) -> dict:
    """The model-config sections of a diffusers directory; ModelDirError if it is not one the
    pipeline runs."""
    path = Path(path)
    check_single_file(path)
    if not (path / "model_index.json").is_file():
        raise ModelDirError(f"{path}: not a diffusers model directory (no model_index.json); "
                            f"fix: pass path= a local copy of the model as save_pretrained wrote "
                            f"it (model_index.json, unet/, text_encoder/, vae/, tokenizer/, "
                            f"scheduler/)")
    index = _json(path / "model_index.json")
    pipeline = index.get("_class_name", "StableDiffusionPipeline")
    if "XL" in pipeline or "text_encoder_2" in index:
        raise ModelDirError(f"{path / 'model_index.json'}: {pipeline} (SDXL) is not supported; "
                            f"fix: use an SD 1.x or 2.x model (StableDiffusionPipeline)")
    for part, classes in CLASSES.items():
        entry = index.get(part)
        if isinstance(entry, list) and len(entry) == 2 and entry[1] not in classes:
            raise ModelDirError(f"{path / 'model_index.json'}: {part} is {entry[1]}; fix: use a "
                                f"model whose {part} is {' or '.join(classes)} (SD 1.x / 2.x)")
    tokenizer = path / "tokenizer"
    if not tokenizer.is_dir():
        raise ModelDirError(f"model directory {path}: no tokenizer/ folder; {LAYOUT}")
    if not any(all((tokenizer / n).is_file() for n in files) for files in TOKENIZER_FILES):
        raise ModelDirError(f"model directory {path}: tokenizer/ holds no tokenizer.json, nor "
                            f"vocab.json with merges.txt; {LAYOUT}")
    unet = _json(path / "unet" / "config.json")
    text = _json(path / "text_encoder" / "config.json")
    vae = _json(path / "vae" / "config.json")
    scheduler = _json(path / "scheduler" / "scheduler_config.json")
    sections = {
        "model": {"init": "pretrained", "path": str(path.resolve()), "seed": 0,
                  "guidance_batch": 2},
        "text_encoder": _arch(text), "unet": _arch(unet), "vae": _arch(vae),
        "scheduler": {"class_name": scheduler.get("_class_name", ""), **_arch(scheduler)},
    }
    for section, defaults in DEFAULTS.items():
        for key, value in defaults.items():
            sections[section].setdefault(key, value)
    return sections


def image_size(sections: dict, where: str) -> int:
    """Pixels: the UNet's sample size (latents) times the VAE's downscale, else the VAE's own."""
    factor = 2 ** (len(sections["vae"].get("block_out_channels", [0])) - 1)
    latents = sections["unet"].get("sample_size")
    if isinstance(latents, int):
        return latents * factor
    pixels = sections["vae"].get("sample_size")
    if isinstance(pixels, int):
        return pixels
    raise ModelDirError(f"{where}: unet/config.json has no sample_size, nor has vae/; fix: set "
                        f"model.image_size in configs/models/<name>.toml and pass model=<name>")


def check_supported(sections: dict, where: str) -> None:
    """Refuse an architecture the pipeline does not run, naming the key and what is supported."""
    for (section, key), allowed in SUPPORTED.items():
        value = sections[section].get(key)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is not None and v not in allowed:
                raise ModelDirError(f"{where}: {section}.{key} has {v!r}, which is not "
                                    f"supported; fix: use a model built of "
                                    f"{', '.join(allowed)} (SD 1.x / 2.x)")
    unet = sections["unet"]
    for key in UNSUPPORTED_UNET_INPUTS:
        if unet.get(key) is not None:
            raise ModelDirError(f"{where}: unet.{key} = {unet[key]!r} adds a UNet input the "
                                f"text-to-image pipeline does not feed; fix: use an SD 1.x / 2.x "
                                f"text-to-image model")
    latent = sections["vae"].get("latent_channels")
    if unet.get("in_channels") != latent or unet.get("out_channels") != latent:
        raise ModelDirError(f"{where}: unet.in_channels = {unet.get('in_channels')!r} and "
                            f"out_channels = {unet.get('out_channels')!r} but the VAE has "
                            f"{latent!r} latent channels (an inpainting or depth UNet?); fix: use "
                            f"a text-to-image model")
