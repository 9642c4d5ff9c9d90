"""Weight-only int8: one scale per output channel, four weights to a 32-bit word.

A weight W (out, ...) is stored as `(q + 128)` bytes, q = round(W / s) in -127..127 with
s = max|W[o]| / 127 per output channel o (rounded to the dtype the module keeps it in first,
so q is what that scale rebuilds best), packed little-endian into uint32 words (out, n / 4):
WGSL has no 8-bit storage type. stages/passes/int8_weights.py takes such a pair as the params
of `main` and dequantizes in the kernels, (byte - 128) * s; emit writes the pairs from the
float32 weights (after any LoRA); verify's PyTorch side runs on `fake` weights (the same
rounding), so it checks the compiler, and the image's PSNR against the float build measures
what the rounding costs. numpy only.
"""

from __future__ import annotations

SUFFIX = "_q8"              # main's param of the packed bytes: <param>_q8
SCALE_SUFFIX = "_q8scale"   # and of the scales: <param>_q8scale


def source(param: str) -> tuple[str, str | None]:
    """(the float param a param of `main` is made from, "packed" | "scales" | None)."""
    if param.endswith(SCALE_SUFFIX):
        return param[:-len(SCALE_SUFFIX)], "scales"
    if param.endswith(SUFFIX):
        return param[:-len(SUFFIX)], "packed"
    return param, None


def int8_weights(names: list[str], dtypes: list[str]) -> dict[str, str]:
    """{float param: the dtype of its scales} for each weight `main` takes as an int8 pair
    (plan.json's param_names and param_dtypes)."""
    dtype_of = dict(zip(names, dtypes))
    return {src: dtype_of[src + SCALE_SUFFIX] for src, part in map(source, names)
            if part == "packed"}


def quantizable(shape) -> bool:
    """A weight of a linear layer, a convolution or an embedding whose rows pack into words."""
    if len(shape) < 2:
        return False
    row = 1
    for d in shape[1:]:
        row *= int(d)
    return row % 4 == 0


def quantize(weight, dtype: str = "float32"):
    """(packed uint32 (out, n / 4), scales float32 (out,)) of a float weight; the scales are
    per output channel, as the module keeps them (float32 values of `dtype`)."""
    import numpy as np

    rows = weight.reshape(weight.shape[0], -1).astype(np.float32, copy=False)
    s = np.abs(rows).max(axis=1) / np.float32(127)
    s[s == 0] = 1
    s = s.astype(dtype).astype(np.float32)
    q = np.clip(np.rint(rows / s[:, None]), -127, 127).astype(np.int16) + 128
    packed = np.ascontiguousarray(q.astype(np.uint8)).view("<u4")
    return packed.reshape(weight.shape[0], -1), s


def dequantize(packed, s, shape):
    """The float32 weight that (packed, s) stands for."""
    import numpy as np

    q = np.ascontiguousarray(packed).view(np.uint8).astype(np.float32) - np.float32(128)
    return (q.reshape(shape[0], -1) * s[:, None].astype(np.float32)).reshape(shape)


def fake(weight, dtype: str = "float32"):
    """The weight after a round trip through int8 (what the compiled module computes with)."""
    packed, s = quantize(weight, dtype)
    return dequantize(packed, s, weight.shape)
