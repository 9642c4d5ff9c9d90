"""What Python and the page agree on, written once: the generation options (ranges and
defaults), the sampler offered first, and how a prompt's tokens are counted.

The package stage writes `manifest()` into manifest.json as "contract"; the page (web/src/
options.js, app.js: the form's ranges and defaults) and the Python runner (generate.py) read it
from there or from here, so no number below appears in a second language (tests/test_contract.py
greps for them). The samplers themselves are the build's tables (sampler_tables); what the
kernels need from a WebGPU adapter is the target config's (manifest.json "requirements").
"""

from __future__ import annotations

STEPS = {"min": 1, "max": 50, "default": 20, "step": 1}
GUIDANCE = {"min": 0.0, "max": 30.0, "default": 7.5, "step": 0.5}
SEED = {"min": 0, "max": 2**32 - 1, "default": 0, "step": 1}   # a uint32: web/src/rng.js
# Image-to-image: how much of the schedule runs over the given image (1: all of it, the image
# is only the start; diffusers' default 0.8). At a strength that leaves no step (steps *
# strength < 1) it is refused.
STRENGTH = {"min": 0.05, "max": 1.0, "default": 0.8, "step": 0.05}
DEFAULT_SAMPLER = "dpm++2m"


def manifest(max_tokens: int, defaults: dict | None = None, guidance_free: bool = False) -> dict:
    """The manifest's "contract": option ranges and defaults, the default sampler, and the
    text encoder's token window (its max_position_embeddings, start and end tokens included).

    defaults: the model's own ([defaults] of its config: steps, guidance, sampler) over the
    ones above. guidance_free: the model runs without classifier-free guidance (its UNet is
    built at batch 1, the prompt alone): its guidance default is 0 and no scale above 1 or
    negative prompt is accepted."""
    defaults = defaults or {}
    options = {"steps": STEPS, "guidance": GUIDANCE, "seed": SEED, "strength": STRENGTH}
    options = {k: {**o, **({"default": defaults[k]} if k in defaults else {})}
               for k, o in options.items()}
    if guidance_free:
        options["guidance"]["default"] = defaults.get("guidance", 0.0)
    return {"options": options, "default_sampler": defaults.get("sampler", DEFAULT_SAMPLER),
            "max_tokens": max_tokens, "guidance_free": guidance_free}
