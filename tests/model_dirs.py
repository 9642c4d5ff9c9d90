"""Diffusers model directories for the tests, written the way users get them: a
StableDiffusionPipeline assembled from seeded modules and saved with save_pretrained.

`SD1` is the tiny config's architecture (its weights are the random build's, byte for byte);
`SD2` changes what SD 2.x changes (per-block head dims, linear projections, upcast attention,
gelu in the text encoder, v-prediction with DDIM, a tokenizer padding with "!"); `SD2_768`
has a 96-latent (768-pixel) sample size, its attention only at the lower resolution.
"""

from __future__ import annotations

import copy
from pathlib import Path

from stages.engine import config
from stages.runtime import components

SUBFOLDERS = {"text_encoder": "text_encoder", "unet": "unet", "vae_decoder": "vae"}
_TINY = config.load("tiny", "llvm")

SD1 = {
    "text_encoder": {}, "unet": {"sample_size": 8}, "vae": {},
    "scheduler": ("PNDMScheduler", {}), "pad_token": None,
}
SD2 = {
    "text_encoder": {"hidden_act": "gelu"},
    "unet": {"sample_size": 8, "attention_head_dim": [2, 4], "use_linear_projection": True,
             "upcast_attention": True},
    "vae": {},
    "scheduler": ("DDIMScheduler", {"prediction_type": "v_prediction", "clip_sample": False,
                                    "set_alpha_to_one": False, "steps_offset": 1,
                                    "timestep_spacing": "trailing"}),
    "pad_token": "!",
}
SD2_768 = copy.deepcopy(SD2)
SD2_768["unet"].update({"sample_size": 96, "down_block_types": ["DownBlock2D",
                                                                "CrossAttnDownBlock2D"],
                        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"]})


def write(dst: Path, tokenizer_dir: Path, style: dict, seed: int = 0) -> Path:
    """save_pretrained of a whole pipeline of `style` under dst; the tokenizer from
    tokenizer_dir (a built model's tokenizer stage output)."""
    import diffusers
    from transformers import CLIPTokenizer

    modules = {}
    for component, sub in SUBFOLDERS.items():
        arch = {**_TINY.arch(component), **style["vae" if sub == "vae" else component]}
        modules[sub] = components.init_random(component, arch, seed)
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    if style["pad_token"]:
        tokenizer.pad_token = style["pad_token"]
    cls, options = style["scheduler"]
    base = {k: v for k, v in _TINY.model["scheduler"].items() if k != "class_name"}
    scheduler = getattr(diffusers, cls).from_config({**base, **options})
    pipe = diffusers.StableDiffusionPipeline(
        vae=modules["vae"], text_encoder=modules["text_encoder"], tokenizer=tokenizer,
        unet=modules["unet"], scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.save_pretrained(str(dst))
    return dst
