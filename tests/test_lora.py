"""LoRAs merged into the weights (issue 16): `doit build lora=FILE[:SCALE],...`.

Files in both layouts people ship (diffusers/PEFT with its metadata alpha, kohya with 3x3
convolution LoRAs), for the UNet and the text encoder, made from the tiny model's own weight
names (tests/lora_files.py). What must hold: a new LoRA or scale rebuilds only the parameter
outputs (stages lora, emit, verify, package: no kernel is compiled again), the compiled
components match diffusers' own loader with the LoRA fused at that scale (verify), the image
matches diffusers' pipeline with the same LoRAs (--compare), and a LoRA that does not fit the
model is one line naming its first bad key, with nothing written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import doit, generate_report, report, tree_digests
from lora_files import kohya_lora, peft_lora
from stages.runtime import lora

# the stages a LoRA change may run: its factors, the shards, verify and the model's manifest
PARAMETER_STAGES = {"lora", "package"} | {f"{s}:{c}" for s in ("emit", "verify")
                                          for c in ("unet", "text_encoder")}


@pytest.fixture(scope="module")
def lora_ws(built, tmp_path_factory):
    """A copy of the session's tiny llvm build, and LoRA files made for it."""
    root = tmp_path_factory.mktemp("lora")
    ws = root / "ws"
    shutil.copytree(built[0], ws, symlinks=True)
    files = {"peft": peft_lora(root / "style_peft.safetensors", ws / "build"),
             "kohya": kohya_lora(root / "style_kohya.safetensors", ws / "build"),
             "unet_only": peft_lora(root / "unet_only.safetensors", ws / "build", seed=3,
                                    text_encoder=False)}
    return ws, files


def _ran(ws) -> set[str]:
    tasks = report(ws)
    return tasks["built"] | tasks["restored"]


def _verified(ws, component) -> float:
    result = json.loads((ws / f"dist/tiny/llvm/{component}/verify.json").read_text())
    assert result["passed"], result
    return result["rel_l2"]


def test_a_lora_or_its_scale_rebuilds_only_the_parameter_outputs(lora_ws):
    ws, files = lora_ws
    plain_text_encoder = tree_digests(ws, "dist/tiny/llvm/text_encoder")
    for spec in (f"{files['peft']}:0.7",                               # a LoRA
                 f"{files['peft']}:0.4",                               # its scale
                 f"{files['kohya']}:0.5,{files['peft']}:-0.3"):         # two, both layouts
        doit(ws, "build", f"lora={spec}")
        ran = _ran(ws)
        assert ran and ran <= PARAMETER_STAGES, f"lora={spec} ran {sorted(ran - PARAMETER_STAGES)}"
        assert {"emit:unet", "emit:text_encoder", "verify:unet", "verify:text_encoder"} <= ran
        # diffusers' loader, the LoRA fused at its scale, against the compiled components
        print(f"\nlora={spec.replace(str(ws.parent), '')}: verify unet "
              f"{_verified(ws, 'unet'):.2e}, text_encoder {_verified(ws, 'text_encoder'):.2e}")
    index = json.loads((ws / "dist/tiny/llvm/manifest.json").read_text())
    assert [(x["file"], x["scale"]) for x in index["loras"]] == [
        ("style_kohya.safetensors", 0.5), ("style_peft.safetensors", -0.3)]

    # a UNet-only LoRA: the text encoder's artifact is the one without LoRAs (restored), and
    # its scale changes nothing of the text encoder at all
    doit(ws, "build", f"lora={files['unet_only']}")
    assert _ran(ws) <= PARAMETER_STAGES and "emit:text_encoder" not in report(ws)["built"]
    assert tree_digests(ws, "dist/tiny/llvm/text_encoder") == plain_text_encoder
    doit(ws, "build", f"lora={files['unet_only']}:0.5")
    assert _ran(ws) == {"lora", "emit:unet", "verify:unet", "package"}


@pytest.mark.long      # three generates; the README's run stays <= 20 min (CI runs it)
def test_the_image_with_loras_matches_diffusers_and_differs_without(lora_ws, tmp_path):
    ws, files = lora_ws
    spec = f"{files['kohya']}:0.8,{files['peft']}:0.6"
    doit(ws, "build", f"lora={spec}")
    args = ("--prompt", "a photo of a cat", "--steps", "4", "--seed", "7")
    with_lora = generate_report(ws, f"lora={spec}", *args, "--compare",
                                "--output", str(tmp_path / "lora.png"))
    assert with_lora["reference"] == "diffusers.StableDiffusionPipeline"
    assert [x["scale"] for x in with_lora["loras"]] == [0.8, 0.6]
    print(f"\nwith LoRAs: PSNR {with_lora['psnr_db']:.1f} dB vs diffusers")
    assert with_lora["psnr_db"] >= 35.0
    # the reference needs the build's own LoRAs (doit passes them; the module's CLI is told)
    proc = subprocess.run([sys.executable, "-m", "stages.runtime.generate", "--model", "tiny",
                           *args, "--compare", "--lora", f"{files['kohya']}:0.8", "--output",
                           str(tmp_path / "x.png")], cwd=ws, capture_output=True, text=True)
    assert proc.returncode == 2 and "built with LoRAs style_kohya.safetensors:0.8, " \
        "style_peft.safetensors:0.6" in proc.stderr and "fix:" in proc.stderr, proc.stderr
    doit(ws, "build")
    plain = generate_report(ws, *args, "--output", str(tmp_path / "plain.png"))
    assert plain["loras"] == []
    from PIL import Image

    a, b = (np.asarray(Image.open(tmp_path / n), np.float64) for n in ("lora.png", "plain.png"))
    assert np.abs(a - b).mean() > 1.0, "the LoRAs did not change the image"


def test_a_lora_that_does_not_fit_is_one_line_and_writes_nothing(lora_ws, tmp_path):
    ws, _ = lora_ws
    doit(ws, "build")
    before = tree_digests(ws, "dist", "build")
    bad_name = tmp_path / "other_model.safetensors"
    key = "lora_unet_up_blocks_9_attentions_0_proj_in"
    save_file({f"{key}.lora_down.weight": np.zeros((4, 64), np.float32),
               f"{key}.lora_up.weight": np.zeros((64, 4), np.float32)}, str(bad_name))
    bad_shape = tmp_path / "other_width.safetensors"
    key2 = "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q"
    save_file({f"{key2}.lora_A.weight": np.zeros((4, 768), np.float32),
               f"{key2}.lora_B.weight": np.zeros((64, 4), np.float32)}, str(bad_shape))
    not_lora = ws / "build/tiny/unet/weights/model.safetensors"
    cases = [(bad_name, f"{key}.lora_down.weight' matches no weight of the model's unet"),
             (bad_shape, "but the weight is 64x64"),
             (not_lora, "is neither a diffusers/PEFT"),
             (tmp_path / "missing.safetensors", "is not a file"),
             (f"{bad_name}:strong", "is not a number")]
    for path, says in cases:
        proc = doit(ws, "build", f"lora={path}", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and says in out, out[-2000:]
        assert "Traceback" not in out
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "fix:" in errors[0], errors
    assert tree_digests(ws, "dist", "build") == before


def test_both_layouts_name_the_same_weights(tmp_path):
    """The parser alone: diffusers/PEFT (new and old names) and kohya keys, each to its
    component, module and part; alpha from kohya's tensor or PEFT's metadata."""
    shapes = {"down_blocks.0.attentions.0.proj_in.weight": (8, 8),
              "encoder.layers.0.self_attn.q_proj.weight": (8, 8)}
    down, up = np.ones((2, 8), np.float32), np.ones((8, 2), np.float32)
    files = {
        "peft": {"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": down,
                 "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": up,
                 "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": down,
                 "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": up},
        "old": {"unet.down_blocks.0.attentions.0.proj_in.lora.down.weight": down,
                "unet.down_blocks.0.attentions.0.proj_in.lora.up.weight": up,
                "text_encoder.encoder.layers.0.self_attn.q_proj.lora.down.weight": down,
                "text_encoder.encoder.layers.0.self_attn.q_proj.lora.up.weight": up},
        "kohya": {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": down,
                  "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": up,
                  "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": np.array(1.0, np.float32),
                  "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": down,
                  "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": up,
                  "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha":
                      np.array(1.0, np.float32)},
    }
    for name, tensors in files.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path))
        assert lora.components_of(path) == {"unet", "text_encoder"}
        for component, key in (("unet", "down_blocks.0.attentions.0.proj_in.weight"),
                               ("text_encoder", "encoder.layers.0.self_attn.q_proj.weight")):
            (got_up, got_down), = lora.factors(lora.Lora(path, 0.5), component, shapes).values()
            assert list(lora.factors(lora.Lora(path, 0.5), component, shapes)) == [key]
            scale = 0.5 * (0.5 if name == "kohya" else 1.0)     # alpha 1 / rank 2 for kohya
            np.testing.assert_allclose(lora.delta(got_up, got_down, (8, 8)),
                                       scale * (up @ down), rtol=1e-6)
    meta = tmp_path / "meta.safetensors"
    save_file(files["peft"], str(meta), metadata={"lora_adapter_metadata": json.dumps(
        {"unet.lora_alpha": 8, "unet.r": 2})})
    (got_up, got_down), = lora.factors(lora.Lora(meta, 1.0), "unet", shapes).values()
    np.testing.assert_allclose(got_up @ got_down, 4.0 * (up @ down), rtol=1e-6)   # 8 / 2
    assert [(x.path.name, x.scale) for x in lora.parse(f"{meta}:0.25,{meta}")] == [
        ("meta.safetensors", 0.25), ("meta.safetensors", 1.0)]
