"""LoRA files: read the two layouts people ship, and merge them into a component's weights.

A LoRA adds `scale * (alpha / rank) * up @ down` to a weight: `down` (rank, fan-in) and `up`
(out, rank), a convolution's kernels flattened. Files come in two layouts:

- diffusers / PEFT: `unet.<module>.lora_A.weight` (down) and `.lora_B.weight` (up), or the
  older `.lora.down.weight` / `.lora.up.weight`; the text encoder's under `text_encoder.`
  (often `text_encoder.text_model.`). No alpha in the tensors: the scale is 1 unless the file's
  `lora_adapter_metadata` (what diffusers' save_lora_weights writes) gives `lora_alpha`.
- kohya (sd-scripts, most shared LoRAs): `lora_unet_<module with _ for .>.lora_down.weight`,
  `.lora_up.weight` and `.alpha`; `lora_te_` (or `lora_te1_`) for the text encoder.

Everything here is numpy on safetensors: the build merges without torch, and a file's key
names are read from its header alone while the DAG is read (`components_of`), so a file that is
not a LoRA stops `doit build` before anything runs. The reference that the build is verified
against is diffusers' own loader (`fuse_with_diffusers`), which shares no code with this.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

# The components a LoRA can change, as diffusers names them in a file
COMPONENTS = ("text_encoder", "unet")
_KOHYA = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder"}
_PEFT = (("lora_A.weight", "down"), ("lora_B.weight", "up"),
         ("lora.down.weight", "down"), ("lora.up.weight", "up"))
_KOHYA_PARTS = (("lora_down.weight", "down"), ("lora_up.weight", "up"), ("alpha", "alpha"))
METADATA_KEY = "lora_adapter_metadata"


class LoraError(ValueError):
    """A LoRA the build cannot use; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Lora:
    """One `lora=FILE[:SCALE]` of the build."""
    path: Path
    scale: float


def parse(spec: str) -> tuple[Lora, ...]:
    """`a.safetensors:0.8,b.safetensors` -> Loras (scale 1 where none is given)."""
    loras = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        path, scale = item, 1.0
        head, sep, tail = item.rpartition(":")
        if sep and not tail.endswith(".safetensors"):
            path = head
            try:
                scale = float(tail)
            except ValueError:
                raise LoraError(f"lora={spec}: scale {tail!r} is not a number; fix: write "
                                f"FILE[:SCALE], e.g. lora=style.safetensors:0.8") from None
            if not math.isfinite(scale):
                raise LoraError(f"lora={spec}: scale {tail!r} is not finite; fix: give a "
                                f"number such as 0.8")
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise LoraError(f"lora: {path} is not a file; fix: give the path of a LoRA "
                            f".safetensors file")
        loras.append(Lora(file, scale))
    if not loras:
        raise LoraError(f"lora={spec!r} names no file; fix: lora=FILE[:SCALE],...")
    return tuple(loras)


def header(path: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """The tensors (name -> dtype, shape) and the metadata of a safetensors file, from its
    header alone."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100 << 20:
                raise ValueError("header too large")
            head = json.loads(f.read(size))
    except (OSError, ValueError, struct.error) as e:
        raise LoraError(f"lora: {path} is not a safetensors file ({e}); fix: give a LoRA "
                        f"saved as .safetensors") from None
    metadata = head.pop("__metadata__", None) or {}
    return head, metadata


def _split(key: str) -> tuple[str, str, str] | None:
    """(component, module as written, part) of a LoRA tensor name, or None."""
    for prefix, component in _KOHYA.items():
        if key.startswith(prefix):
            for suffix, part in _KOHYA_PARTS:
                if key.endswith("." + suffix):
                    return component, key[len(prefix):-len(suffix) - 1], part
            return None
    component, _, rest = key.partition(".")
    if component not in COMPONENTS:
        return None
    for suffix, part in _PEFT:
        if rest.endswith("." + suffix):
            return component, rest[:-len(suffix) - 1], part
    return None


def _unknown(path: Path, key: str) -> LoraError:
    return LoraError(f"lora: {path.name}: key {key!r} is neither a diffusers/PEFT "
                     f"(unet.<module>.lora_A.weight) nor a kohya (lora_unet_<module>.lora_down."
                     f"weight) LoRA tensor; fix: convert it to one of those layouts")


def components_of(path: Path) -> set[str]:
    """The components a LoRA file changes, from its header; LoraError on a key of neither
    layout."""
    tensors, _ = header(path)
    found = set()
    for key in tensors:
        split = _split(key)
        if split is None:
            raise _unknown(path, key)
        found.add(split[0])
    if not found:
        raise LoraError(f"lora: {path.name} holds no tensor; fix: give a LoRA file")
    return found


@dataclass
class Layer:
    """One low-rank update of one weight: W += up @ down (scale folded into `up`)."""
    module: str          # as the file writes it
    down: object = None  # numpy (rank, fan-in...)
    up: object = None    # numpy (out, rank[, 1, 1])
    alpha: float | None = None


def _module_names(weights: dict[str, tuple]) -> dict[str, str]:
    """How a file may name each weight's module -> the weight's key in the component's state
    dict: dotted (`down_blocks.0.attentions.0.proj_in`), the same under transformers' older
    `text_model.` root, and kohya's underscored spelling of either."""
    names = {}
    for key in weights:
        if not key.endswith(".weight"):
            continue
        module = key[:-len(".weight")]
        for spelled in (module, f"text_model.{module}"):
            names[spelled] = key
            names[spelled.replace(".", "_")] = key
    return names


def _metadata_alpha(metadata: dict, component: str, module: str, rank: int) -> float:
    """The alpha a PEFT file's metadata gives a module (lora_alpha, alpha_pattern), or rank (a
    scale of 1) when it gives none."""
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return float(rank)
    config = {k.removeprefix(f"{component}."): v for k, v in json.loads(raw).items()
              if k.startswith(f"{component}.")}
    for flag in ("use_dora", "use_rslora"):
        if config.get(flag):
            raise LoraError(f"lora: the file's metadata sets {component}.{flag}, which the build "
                            f"does not merge; fix: merge that adapter with PEFT first")
    for pattern, alpha in (config.get("alpha_pattern") or {}).items():
        if re.fullmatch(rf"(.*\.)?{pattern}", module):
            return float(alpha)
    return float(config.get("lora_alpha", rank))


def factors(lora: Lora, component: str, weights: dict[str, tuple]) -> dict[str, tuple]:
    """{state-dict weight key: (up, down)} of one file for one component, the file's alpha and
    the build's scale folded into `up`; `weights` (key -> shape) is the component's, and the
    first LoRA key that names no weight of it, or whose shapes do not fit, is a LoraError."""
    import numpy as np
    from safetensors.numpy import load_file

    tensors, metadata = header(lora.path)
    names = _module_names(weights)
    layers: dict[str, Layer] = {}
    first_key: dict[str, str] = {}
    for key in tensors:
        split = _split(key)
        if split is None:
            raise _unknown(lora.path, key)
        if split[0] != component:
            continue
        layers.setdefault(split[1], Layer(split[1]))
        first_key.setdefault(split[1], key)
    if not layers:
        return {}
    values = load_file(str(lora.path))
    out = {}
    for module, layer in layers.items():
        for key, value in values.items():
            split = _split(key)
            if split and split[0] == component and split[1] == module:
                if split[2] == "alpha":
                    layer.alpha = float(np.asarray(value, np.float64).reshape(-1)[0])
                else:
                    setattr(layer, split[2], np.asarray(value, np.float32))
        key = first_key[module]
        target = names.get(module)
        if target is None:
            raise LoraError(f"lora: {lora.path.name}: {key!r} matches no weight of the model's "
                            f"{component}; fix: use a LoRA made for this model's architecture")
        if layer.down is None or layer.up is None:
            raise LoraError(f"lora: {lora.path.name}: {module!r} has no "
                            f"{'down' if layer.down is None else 'up'} matrix; fix: give a "
                            f"complete LoRA file")
        rank = layer.down.shape[0]
        shape = weights[target]
        down = layer.down.reshape(rank, -1)
        up = layer.up.reshape(layer.up.shape[0], -1)
        if (up.shape != (shape[0], rank)
                or down.shape[1] != int(np.prod(shape[1:], dtype=np.int64))):
            raise LoraError(f"lora: {lora.path.name}: {key!r} gives {target} an update of "
                            f"{up.shape[0]}x{down.shape[1]} but the weight is "
                            f"{'x'.join(map(str, shape))}; fix: use a LoRA made for this "
                            f"model's architecture")
        alpha = layer.alpha if layer.alpha is not None else _metadata_alpha(
            metadata, component, module, rank)
        out[target] = (up * np.float32(lora.scale * alpha / rank), down)
    return out


def combine(per_file: list[dict[str, tuple]]) -> dict[str, tuple]:
    """Several files' factors as one: a weight changed by two LoRAs gets both ranks side by
    side (up1|up2 @ down1/down2 = up1 @ down1 + up2 @ down2)."""
    import numpy as np

    merged: dict[str, list] = {}
    for factors_ in per_file:
        for key, pair in factors_.items():
            merged.setdefault(key, []).append(pair)
    return {key: (np.concatenate([u for u, _ in pairs], axis=1),
                  np.concatenate([d for _, d in pairs], axis=0))
            for key, pairs in sorted(merged.items())}


def delta(up, down, shape):
    """The update of one weight (float32, its shape)."""
    return (up @ down).reshape(shape)


# NOTE: diffusers 0.42.1 converts kohya's text-encoder attention keys (lora_te_..._self_attn_
# q_proj) to its old `self_attn.to_q_lora.down` names, which its PEFT loader then drops as
# unexpected (with transformers 5): the reference would leave out q/k/v/out_proj. Renamed to
# the `q_proj.lora_linear_layer.down` convention it converts the MLP's keys to, they load.
_OLD_ATTENTION = {"to_q_lora": "q_proj", "to_k_lora": "k_proj", "to_v_lora": "v_proj",
                  "to_out_lora": "out_proj"}


def _kohya_text_attention(tensors: dict | None) -> dict | None:
    if not tensors:
        return tensors
    out = {}
    for key, value in tensors.items():
        for old, new in _OLD_ATTENTION.items():
            key = key.replace(f".self_attn.{old}.", f".self_attn.{new}.lora_linear_layer.")
        out[key] = value
    return out


def fuse_with_diffusers(component: str, module, loras: list[Lora]) -> None:
    """The reference: each LoRA loaded by diffusers' StableDiffusion loader into the torch
    module, fused at its scale and unloaded (the fused weights stay), one after another, as
    `pipe.load_lora_weights(f); pipe.fuse_lora(lora_scale=s); pipe.unload_lora_weights()`
    does."""
    import diffusers
    import transformers
    from diffusers.loaders import StableDiffusionLoraLoaderMixin as Loader
    from diffusers.loaders.lora_base import (_remove_text_encoder_monkey_patch,
                                             fuse_text_encoder_lora)

    # NOTE: the loaders list every base weight they leave alone; nothing for a user to act on
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    for i, lora in enumerate(loras):
        state, alphas, metadata = Loader.lora_state_dict(str(lora.path),
                                                         return_lora_metadata=True)
        state, alphas = _kohya_text_attention(state), _kohya_text_attention(alphas)
        name = f"lora{i}"
        if component == "unet":
            Loader.load_lora_into_unet(state, alphas, module, adapter_name=name, metadata=metadata)
            module.fuse_lora(lora.scale, adapter_names=[name])
            module.unload_lora()
        else:
            Loader.load_lora_into_text_encoder(state, alphas, module, adapter_name=name,
                                               metadata=metadata)
            fuse_text_encoder_lora(module, lora_scale=lora.scale, adapter_names=[name])
            _remove_text_encoder_monkey_patch(module)
