"""Weights from a local diffusers directory (the path real SD v1.5 checkpoints take).

The directory is written by diffusers/transformers `save_pretrained` from the tiny config's
seeded modules, so loading it must give the very tensors of the random build.
"""

import hashlib
import json
import shutil

from conftest import doit, report
from stages.runtime import components
from stages.engine import config

SUBFOLDERS = {"text_encoder": "text_encoder", "unet": "unet", "vae_decoder": "vae"}


def _diffusers_dir(ws, dst):
    cfg = config.load("tiny", "llvm")
    for component, sub in SUBFOLDERS.items():
        module = components.init_random(component, cfg.arch(component), cfg.model["model"]["seed"])
        module.save_pretrained(str(dst / sub))
    shutil.copytree(ws / "build/tiny/model/tokenizer", dst / "tokenizer")
    (dst / "scheduler").mkdir()
    shutil.copy(ws / "build/tiny/model/noise_scheduler/scheduler_config.json", dst / "scheduler")
    (dst / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return dst


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_from_local_diffusers_directory(workspace, tmp_path):
    model_dir = _diffusers_dir(workspace, tmp_path / "sd-tiny")
    weights = {c: _sha(workspace / f"build/tiny/{c}/weights/model.safetensors")
               for c in SUBFOLDERS}
    doit(workspace, "build", f"path={model_dir}")
    assert {f"weights:{c}" for c in SUBFOLDERS} <= report(workspace)["built"]
    for c in SUBFOLDERS:
        assert _sha(workspace / f"build/tiny/{c}/weights/model.safetensors") == weights[c]
        assert json.loads((workspace / f"dist/tiny/llvm/{c}/verify.json").read_text())["passed"]


def test_checkpoint_that_does_not_match_the_config_is_refused(workspace, tmp_path):
    model_dir = _diffusers_dir(workspace, tmp_path / "sd-tiny")
    unet_config = model_dir / "unet/config.json"
    data = json.loads(unet_config.read_text())
    data["cross_attention_dim"] = 48
    unet_config.write_text(json.dumps(data))
    proc = doit(workspace, "weights:unet", f"path={model_dir}", check=False)
    assert proc.returncode != 0
    assert "cross_attention_dim = 48 but the model config says 32" in proc.stdout + proc.stderr
