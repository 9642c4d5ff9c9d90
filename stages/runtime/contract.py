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
DEFAULT_SAMPLER = "dpm++2m"


def manifest(max_tokens: int) -> dict:
    """The manifest's "contract": option ranges and defaults, the default sampler, and the
    text encoder's token window (its max_position_embeddings, start and end tokens included)."""
    return {"options": {"steps": STEPS, "guidance": GUIDANCE, "seed": SEED},
            "default_sampler": DEFAULT_SAMPLER, "max_tokens": max_tokens}
