"""The torch side of each component: how to build it, load it, and where its graph begins and ends.

The weights, capture and verify stages all need the same modules and the same export boundary,
so they live here, once. torch and diffusers are imported inside the functions: importing this
module is free.
"""

from __future__ import annotations

import json
from pathlib import Path

# Which diffusers/transformers class builds each component, and its subfolder in a diffusers dir.
CLASSES = {
    "text_encoder": ("transformers", "CLIPTextModel", "text_encoder"),
    "unet": ("diffusers", "UNet2DConditionModel", "unet"),
    "vae_decoder": ("diffusers", "AutoencoderKL", "vae"),
    "vae_encoder": ("diffusers", "AutoencoderKL", "vae"),
}


def module_class(component: str):
    import importlib

    package, name, _ = CLASSES[component]
    return getattr(importlib.import_module(package), name)


def init_random(component: str, arch: dict, seed: int):
    """The component with weights drawn from `seed`: the same bytes on every run of one torch."""
    import torch

    cls = module_class(component)
    torch.manual_seed(seed)
    if component == "text_encoder":
        from transformers import CLIPTextConfig

        return cls(CLIPTextConfig(**arch)).eval()
    return cls(**arch).eval()


def from_config(component: str, config: dict):
    """The component built from a saved config.json's dict, its weights left as initialised
    (under `with torch.device("meta")`: shapes only, no memory)."""
    cls = module_class(component)
    if component == "text_encoder":
        from transformers import CLIPTextConfig

        return cls(CLIPTextConfig(**config))
    return cls.from_config(config)


def read_config(component: str, model_dir: Path) -> dict:
    """The architecture config of a component saved with save_pretrained, without its weights."""
    if component == "text_encoder":
        from transformers import CLIPTextConfig

        return CLIPTextConfig.from_pretrained(str(model_dir), local_files_only=True).to_dict()
    return dict(module_class(component).load_config(str(model_dir), local_files_only=True))


def load(component: str, weights_dir: Path):
    """The component from a weights stage output (config.json + model.safetensors)."""
    from safetensors.torch import load_file

    config = json.loads((weights_dir / "config.json").read_text())
    module = from_config(component, config)
    state = load_file(str(weights_dir / "model.safetensors"))
    missing, unexpected = module.load_state_dict(state, strict=False)
    # NOTE: transformers keeps position_ids as a non-persistent buffer in some versions.
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"{weights_dir}: weights do not fit the {component} architecture "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}); "
                         f"fix: rebuild the weights stage")
    return module.eval()


def wrapper(component: str, module):
    """A thin nn.Module whose forward is the export boundary: tensors in, one tensor out."""
    import torch

    class TextEncoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids, return_dict=False)[0]

    class UNet(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.m(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    class VaeDecoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, latents):
            return self.m.decode(latents, return_dict=False)[0]

    class VaeEncoder(torch.nn.Module):
        """Image in [-1, 1] -> the moments of the latent distribution, (1, 2C, h, w): mean,
        then log-variance (unclamped). The sample is drawn outside, from the seeded generator
        (encoder_latents), so the page and Python draw the same one."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):
            return self.m.encode(image, return_dict=False)[0].parameters

    cls = {"text_encoder": TextEncoder, "unet": UNet, "vae_decoder": VaeDecoder,
           "vae_encoder": VaeEncoder}[component]
    return cls(module).eval()


def example_inputs(specs: dict, seed: int, vocab_size: int | None = None) -> dict:
    """Deterministic inputs with the given (shape, dtype) specs, as numpy arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in specs.items():
        if dtype.startswith("int"):
            out[name] = rng.integers(0, vocab_size, size=shape).astype(dtype)
        elif name == "timestep":
            out[name] = np.array(rng.integers(1, 1000), dtype=dtype).reshape(shape)
        else:
            out[name] = rng.standard_normal(size=shape).astype(dtype)
    return out
