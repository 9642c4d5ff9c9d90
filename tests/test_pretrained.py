"""Weights from a local diffusers directory (the path real SD v1.5 checkpoints take).

The directory is a whole pipeline saved with save_pretrained from the tiny config's seeded
modules (tests/model_dirs.py), so loading it must give the very tensors of the random build.
A checkpoint that does not load or does not fit its architecture stops the weights stage, before
anything is captured, with one line naming the file and the fix; dist/ and cache/ stay as they
were.
"""

import hashlib
import json

import pytest

import model_dirs
from conftest import doit, generate_report, report, tree_digests


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sd1(workspace, tmp_path):
    return model_dirs.write(tmp_path / "sd-tiny", workspace / "build/tiny/model/tokenizer",
                            model_dirs.SD1)


def test_build_from_local_diffusers_directory(workspace, sd1):
    weights = {c: _sha(workspace / f"build/tiny/{c}/weights/model.safetensors")
               for c in model_dirs.SUBFOLDERS}
    doit(workspace, "build", f"path={sd1}")
    # named after the directory; every weight the random build's, byte for byte
    assert {f"weights:{c}" for c in model_dirs.SUBFOLDERS} <= report(workspace, "sd-tiny")["built"]
    for c in model_dirs.SUBFOLDERS:
        assert _sha(workspace / f"build/sd-tiny/{c}/weights/model.safetensors") == weights[c]
        assert json.loads((workspace / f"dist/sd-tiny/llvm/{c}/verify.json").read_text())["passed"]
    # the model's own scheduler (PNDM), by name, against diffusers' pipeline
    said = generate_report(workspace, f"path={sd1}", "--prompt", "a cat", "--steps", "3",
                           "--scheduler", "pndm", "--compare", "--output", str(sd1 / "out.png"))
    assert said["reference"] == "diffusers.StableDiffusionPipeline"
    assert said["psnr_db"] == "inf" or said["psnr_db"] >= 35, said


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _corrupt_header(path):
    data = bytearray(path.read_bytes())
    data[10:40] = b"\xff" * 30
    path.write_bytes(bytes(data))


def _edit_tensors(path, change):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def _nan(tensors):
    name = sorted(tensors)[0]
    tensors[name][..., 0] = float("nan")


def _rename(tensors):
    tensors["bogus.weight"] = tensors.pop("conv_in.bias")


def _other_config(path):
    data = json.loads(path.read_text())
    data["cross_attention_dim"] = 48
    path.write_text(json.dumps(data))


UNET = "unet/diffusion_pytorch_model.safetensors"
BAD_WEIGHTS = {   # what is done to the directory -> its file, what the line says
    "truncated": (UNET, _truncate, "truncated or corrupt"),
    "corrupt header": (UNET, _corrupt_header, "truncated or corrupt"),
    "NaN values": (UNET, lambda p: _edit_tensors(p, _nan), "NaN"),
    "missing and unexpected keys": (UNET, lambda p: _edit_tensors(p, _rename),
                                    "1 missing (conv_in.bias); 1 unexpected (bogus.weight)"),
    "a config.json of another shape": ("unet/config.json", _other_config,
                                       "misshaped (down_blocks.0.attentions.0"),
    "text encoder keys missing": ("text_encoder/model.safetensors",
                                  lambda p: _edit_tensors(p, lambda t: t.pop(sorted(t)[-1])),
                                  "1 missing"),
}


def _stored(ws):
    """dist/ and cache/ as digests, less the build's report and history (which say it ran) and
    the stage's empty lock file (kept: unlinking a lock races with the next taker)."""
    return {k: v for k, v in tree_digests(ws, "dist", "cache").items()
            if not k.endswith("history.jsonl") and not k.startswith("cache/locks/")}


@pytest.mark.parametrize("case", BAD_WEIGHTS)
def test_a_bad_checkpoint_is_one_line_before_anything_is_built(workspace, sd1, case):
    rel, damage, said = BAD_WEIGHTS[case]
    damage(sd1 / rel)
    before = _stored(workspace)
    proc = doit(workspace, "build", f"path={sd1}", check=False)
    assert proc.returncode != 0
    errors = [line for line in (proc.stdout + proc.stderr).splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1 and "fix:" in errors[0] and said in errors[0], proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    # the checkpoint stage runs first: nothing else was built, stored or written to dist/
    assert "TaskFailed - taskid:checkpoint" in proc.stdout + proc.stderr
    assert _stored(workspace) == before
    assert not (workspace / "build/sd-tiny/model/tokenizer").exists()
