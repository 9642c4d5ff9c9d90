"""A local model's weight files: found, read and checked against its architecture.

diffusers and transformers only warn when a checkpoint does not fit the config beside it
("weights not used", "newly initialized"), and a truncated file fails deep inside them. A bad
checkpoint would then compile and fail verify with a NaN that points at the compiler. So the
checkpoint stage (stages/checkpoint.py) reads the files' headers first: every tensor the
architecture has, with its shape, and nothing else; then every value finite. Each failure is
one line naming the file and the fix (CheckpointError).

torch and safetensors are imported inside the functions: importing this module is free.
"""

from __future__ import annotations

import re
from pathlib import Path

# The file names from_pretrained reads (without a variant), whole or sharded.
WEIGHT_NAMES = ("diffusion_pytorch_model", "model")
SHARD = re.compile(r"-\d{5}-of-\d{5}$")
# Checkpoint key spellings the loaders convert: the text model's prefix (transformers 4 saved
# it, transformers 5's module has none) and the VAE attention of diffusers before 0.14.
RENAMES = ((re.compile(r"^text_model\."), ""),
           (re.compile(r"\.query\."), ".to_q."), (re.compile(r"\.key\."), ".to_k."),
           (re.compile(r"\.value\."), ".to_v."), (re.compile(r"\.proj_attn\."), ".to_out.0."))
# Buffers some checkpoints carry and the module recomputes.
IGNORED = re.compile(r"position_ids$")
SHOWN = 2   # names listed per kind of mismatch


class CheckpointError(Exception):
    """A checkpoint that does not load or does not fit, worded as one line with its fix."""


def weight_files(folder: Path) -> tuple[list[Path], str | None]:
    """The weight files from_pretrained would read in `folder`, and the variant ("fp16") when
    only a variant is there."""
    for suffix in (".safetensors", ".bin"):
        for variant in (None, "fp16"):
            files = []
            for p in sorted(folder.glob(f"*{suffix}")):
                stem = p.name[:-len(suffix)]
                if variant:
                    if not stem.endswith("." + variant):
                        continue
                    stem = stem[:-len(variant) - 1]
                elif "." in stem:
                    continue
                if SHARD.sub("", stem) in WEIGHT_NAMES:
                    files.append(p)
            if files:
                return files, variant
    raise CheckpointError(f"{folder}: no weights (diffusion_pytorch_model.safetensors, "
                          f"model.safetensors or .bin); fix: copy the model's weight files there")


def _canonical(name: str) -> str:
    for pattern, repl in RENAMES:
        name = pattern.sub(repl, name)
    return name


def file_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the files' headers (safetensors) or a weights-only load."""
    import torch
    from safetensors import SafetensorError, safe_open

    shapes = {}
    for f in files:
        try:
            if f.suffix == ".safetensors":
                with safe_open(str(f), "pt") as h:
                    for k in h.keys():
                        shapes[_canonical(k)] = tuple(h.get_slice(k).get_shape())
            else:
                state = torch.load(str(f), map_location="cpu", weights_only=True, mmap=True)
                shapes.update({_canonical(k): tuple(v.shape) for k, v in state.items()})
        except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as e:
            raise CheckpointError(f"{f}: not a readable weights file "
                                  f"({str(e).splitlines()[0][:160]}); fix: download or copy it "
                                  f"again (it is truncated or corrupt)") from None
    return shapes


def check_fit(component: str, config: dict, files: list[Path]) -> None:
    """Every tensor of the architecture in `config`, with its shape, and no other."""
    import torch

    from stages.runtime import components

    with torch.device("meta"):
        module = components.from_config(component, config)
    want = {_canonical(k): tuple(v.shape) for k, v in module.state_dict().items()
            if not IGNORED.search(k)}
    have = {k: v for k, v in file_shapes(files).items() if not IGNORED.search(k)}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    misshaped = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if not (missing or unexpected or misshaped):
        return

    def listed(names, what):
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        return f"{len(names)} {what} ({', '.join(names[:SHOWN])}{more})"

    parts = []
    if misshaped:
        k = misshaped[0]
        parts.append(listed(misshaped, "misshaped") + f": {k} is {list(have[k])} in the file, "
                     f"{list(want[k])} for config.json")
    if missing:
        parts.append(listed(missing, "missing"))
    if unexpected:
        parts.append(listed(unexpected, "unexpected"))
    raise CheckpointError(f"{files[0].parent}: the weights do not fit the architecture in "
                          f"config.json: {'; '.join(parts)}; fix: use the config.json that came "
                          f"with these weights (and no TOML key that changes it)")


def tensors(path: Path):
    """(name, tensor) of every tensor in one weights file, one at a time."""
    import torch
    from safetensors import safe_open

    if path.suffix == ".safetensors":
        with safe_open(str(path), "pt") as h:
            for k in h.keys():
                yield k, h.get_tensor(k)
    else:
        yield from torch.load(str(path), map_location="cpu", weights_only=True,
                              mmap=True).items()


def check_finite(name: str, tensor, where: Path) -> None:
    import torch

    if not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"{where}: tensor {name} holds NaN or infinite values; fix: "
                              f"download or copy the weights again (the file is corrupt)")
