"""LoRA files for tests and benchmarks, written the two ways people ship them.

No LoRA can be downloaded here, so these are made from the model's own weight names and shapes
(the weights stage's safetensors headers) with seeded random factors: the diffusers/PEFT
layout that `save_lora_weights` writes (lora_A/lora_B, alpha in `lora_adapter_metadata`) and
kohya's (lora_down/lora_up/alpha, module names with `_`, 3x3 convolution LoRAs too).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stages.runtime.lora import header

ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")        # the UNet's usual LoRA targets
TEXT = ("q_proj", "v_proj", "mlp.fc1")                   # the text encoder's


def _weights(build: Path, model: str, component: str) -> dict[str, tuple]:
    tensors, _ = header(build / model / component / "weights" / "model.safetensors")
    return {k: tuple(v["shape"]) for k, v in tensors.items() if k.endswith(".weight")}


def targets(build: Path, model: str, component: str, suffixes) -> dict[str, tuple]:
    return {k[:-len(".weight")]: s for k, s in _weights(build, model, component).items()
            if k[:-len(".weight")].endswith(tuple(suffixes))}


def peft_lora(path: Path, build: Path, model: str = "tiny", rank: int = 4, alpha: float = 8.0,
              seed: int = 0, text_encoder: bool = True, std: float = 0.05) -> Path:
    """diffusers/PEFT: unet.<module>.lora_A.weight, text_encoder.text_model.<module>...,
    lora_alpha in the metadata (scale alpha / rank)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    parts = [("unet", "unet", ATTENTION)] + ([("text_encoder", "text_encoder.text_model", TEXT)]
                                            if text_encoder else [])
    for component, prefix, suffixes in parts:
        for module, shape in targets(build, model, component, suffixes).items():
            tensors[f"{prefix}.{module}.lora_A.weight"] = (
                rng.standard_normal((rank, shape[1]), np.float32) * std)
            tensors[f"{prefix}.{module}.lora_B.weight"] = (
                rng.standard_normal((shape[0], rank), np.float32) * std)
    meta = {f"{c}.{k}": v for c, _, suffixes in parts
            for k, v in (("r", rank), ("lora_alpha", alpha), ("target_modules", list(suffixes)))}
    save_file(tensors, str(path), metadata={"format": "pt",
                                            "lora_adapter_metadata": json.dumps(meta)})
    return path


def kohya_lora(path: Path, build: Path, model: str = "tiny", rank: int = 4, alpha: float = 2.0,
               seed: int = 1, std: float = 0.05) -> Path:
    """kohya: lora_unet_<module_with_underscores>.lora_down.weight / .lora_up.weight / .alpha,
    with the UNet's 3x3 resnet convolutions (LoCon) and the text encoder (lora_te_)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    unet = targets(build, model, "unet", ATTENTION + ("conv1",))
    text = targets(build, model, "text_encoder", TEXT)
    for prefix, modules in (("lora_unet_", unet), ("lora_te_text_model_", text)):
        for module, shape in modules.items():
            name = prefix + module.replace(".", "_")
            kernel = shape[2:]
            tensors[f"{name}.lora_down.weight"] = (
                rng.standard_normal((rank, shape[1], *kernel), np.float32) * std)
            tensors[f"{name}.lora_up.weight"] = (
                rng.standard_normal((shape[0], rank, *(1,) * len(kernel)), np.float32) * std)
            tensors[f"{name}.alpha"] = np.array(alpha, np.float32)
    save_file(tensors, str(path))
    return path
