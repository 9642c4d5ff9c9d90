"""8-bit weights (issue 16): configs/models/tiny-int8.toml, the tiny model with
`model.weights = "int8"`.

Its UNet and text encoder take their weights as packed int8 bytes with a scale per output
channel (stages/passes/int8_weights.py), written by emit (stages/runtime/quantize.py). What
must hold: the parameter files shrink to about a quarter of float32; verify (the compiled
module against PyTorch on the same rounded weights) passes at the usual threshold; the image
differs from the float model's, on the same seed, by no more than PSNR 30 dB; the VAE, which
the setting leaves alone, is restored from the float model's cache.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import built_model, doit, generate_report, report
from stages.runtime import quantize


@pytest.fixture(scope="module")
def int8_ws(built, tmp_path_factory):
    return built_model(built, tmp_path_factory, "tiny-int8")


def _param_bytes(ws, model, component):
    return sum(p.stat().st_size for p in (ws / f"dist/{model}/llvm/{component}/params").iterdir())


def test_int8_weights_shrink_the_download_and_verify(int8_ws):
    ws = int8_ws
    index = json.loads((ws / "dist/tiny-int8/llvm/manifest.json").read_text())
    for component in ("unet", "text_encoder"):
        ratio = _param_bytes(ws, "tiny-int8", component) / _param_bytes(ws, "tiny", component)
        print(f"\n{component}: int8 params {ratio:.2f}x float32")
        assert ratio < 0.32
        verify = index["variants"][component]["verify"]
        assert verify["rel_l2"] <= verify["max_rel_l2"]
        plan = json.loads((ws / f"build/tiny-int8/llvm/{component}/plan/plan.json").read_text())
        assert any(n.endswith(quantize.SUFFIX) for n in plan["param_names"])
    for component in ("vae_decoder", "vae_encoder"):   # untouched: the float model's bytes
        assert _param_bytes(ws, "tiny-int8", component) == _param_bytes(ws, "tiny", component)
    ran = report(ws, "tiny-int8")
    assert not {t for t in ran["built"] if t.split(":")[0] in ("weights", "capture", "import")}


@pytest.mark.long      # two generates; the README's run stays <= 20 min (CI runs it)
def test_the_int8_image_stays_within_30_db_of_the_float_one(int8_ws, tmp_path):
    args = ("--prompt", "a photo of a cat", "--steps", "8", "--seed", "3")
    images = {}
    for model in ("tiny", "tiny-int8"):
        generate_report(int8_ws, f"model={model}", *args, "--output", str(tmp_path / f"{model}.png"))
        from PIL import Image

        images[model] = np.asarray(Image.open(tmp_path / f"{model}.png"), np.float64) / 255
    mse = np.mean((images["tiny"] - images["tiny-int8"]) ** 2)
    psnr = 10 * np.log10(1 / mse) if mse else float("inf")
    print(f"\nint8 vs float image: PSNR {psnr:.1f} dB")
    assert psnr >= 30.0


def test_quantize_rounds_each_row_to_its_own_scale():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    weight[2] = 0                                     # an all-zero channel keeps scale 1
    packed, scales = quantize.quantize(weight)
    assert packed.dtype == np.uint32 and packed.shape == (6, 8 * 9 // 4)
    back = quantize.dequantize(packed, scales, weight.shape)
    err = np.abs(back - weight).reshape(6, -1).max(axis=1)
    assert np.all(err <= scales / 2 + 1e-7) and scales[2] == 1 and not back[2].any()
    # each row's largest magnitude is exact (+-127 steps), and bytes are offset by 128
    rows = np.abs(weight.reshape(6, -1)).max(axis=1)
    np.testing.assert_allclose(np.abs(back.reshape(6, -1)).max(axis=1)[rows > 0],
                               rows[rows > 0], rtol=1e-6)
    first = packed.view(np.uint8)[0, 0]
    assert first == np.rint(weight[0].reshape(-1)[0] / scales[0]) + 128
    # float16 scales: the bytes are rounded against the scale as float16 keeps it
    _, s16 = quantize.quantize(weight, "float16")
    assert np.array_equal(s16, s16.astype(np.float16).astype(np.float32))
    assert quantize.quantizable((320, 4)) and not quantize.quantizable((77, 3))
    assert not quantize.quantizable((320,))


@pytest.mark.long
def test_int8_weights_run_under_webgpu(built_webgpu, tmp_path):
    """WGSL has no 8-bit type: the packed words are u32, expanded by shifts in the kernels.
    The float16 variants run under Dawn (lavapipe) against PyTorch on the rounded weights."""
    ws = tmp_path / "ws"
    shutil.copytree(built_webgpu[0], ws, symlinks=True)
    doit(ws, "build", "model=tiny-int8", "target=webgpu")
    index = json.loads((ws / "dist/tiny-int8/webgpu/manifest.json").read_text())
    tiny = json.loads((ws / "dist/tiny/webgpu/manifest.json").read_text())
    for variant in ("unet-fp16", "text_encoder-fp16", "unet", "text_encoder"):
        verify = index["variants"][variant]["verify"]
        print(f"\n{variant}: rel-L2 {verify['rel_l2']:.2e} (max {verify['max_rel_l2']:g}), "
              f"params {index['variants'][variant]['param_bytes'] / tiny['variants'][variant]['param_bytes']:.2f}x")
        assert verify["rel_l2"] is not None and verify["rel_l2"] <= verify["max_rel_l2"]
        assert index["variants"][variant]["param_bytes"] < 0.6 * tiny["variants"][variant]["param_bytes"]
