"""The failure paths a user meets before any stage runs, walked in a fresh checkout: each is one
line that names what is wrong and the fix, exit status != 0, no traceback, and nothing written
(no build/, dist/ or cache/). Failures inside stages are one line too (stages/engine/runner.py
one_line; tests/test_engine.py), and each stage's own are tested with it (test_webgpu: kernels
over the limits, test_cache: corrupt blobs, test_pretrained: a checkpoint that does not fit)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import checkout

CASES = {
    "unknown model": (["doit", "build", "model=nope"], {}, "configs/models/nope.toml"),
    "unknown target": (["doit", "build", "target=nope"], {}, "configs/targets/nope.toml"),
    "not a model directory": (["doit", "build", "path=/nonexistent"], {}, "not a diffusers model"),
    "a model directory without unet/": (["doit", "build", "path={partial}"], {}, "no unet/ folder"),
    "a model directory with an empty tokenizer/": (["doit", "build", "path={empty_tokenizer}"], {},
                                                   "tokenizer/ holds no"),
    "a model directory without tokenizer/": (["doit", "build", "path={no_tokenizer}"], {},
                                             "no tokenizer/ folder"),
    "a config.json that is not JSON": (["doit", "build", "path={bad_json}"], {},
                                       "not valid JSON"),
    "an unsupported block type": (["doit", "build", "path={unsupported}"], {},
                                  "'SimpleCrossAttnDownBlock2D', which is not supported"),
    "an SDXL directory": (["doit", "build", "path={sdxl}"], {}, "(SDXL) is not supported"),
    "a single-file checkpoint": (["doit", "build", "path={single}/sd-v1-5.safetensors"], {},
                                 "a single-file checkpoint"),
    "a folder holding a single-file checkpoint": (["doit", "build", "path={single}"], {},
                                                  "a single-file checkpoint"),
    "bad remote cache url": (["doit", "build"], {"WEBSD_CACHE_URL": "ftp://cache"},
                             "WEBSD_CACHE_URL"),
    "steps out of range": (["generate", "--steps", "0"], {}, "steps must be an integer in 1..50"),
    "guidance out of range": (["generate", "--guidance", "31"], {}, "guidance must be a number"),
    "seed out of range": (["generate", "--seed", "-1"], {}, "seed"),
}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    return checkout(tmp_path_factory.mktemp("fresh"))


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Diffusers directories with one thing wrong, as JSON alone (nothing is loaded before the
    config is refused): {partial} lacks unet/, {empty_tokenizer}'s tokenizer/ is empty,
    {no_tokenizer} has none, {bad_json}'s unet/config.json is cut, {unsupported} has a block
    SD 1.x / 2.x do not, {sdxl} is an SDXL pipeline; {single} holds a single-file checkpoint."""
    unet = {"_class_name": "UNet2DConditionModel", "sample_size": 8, "in_channels": 4,
            "out_channels": 4}
    whole = {   # a directory whose JSON passes: each layout below changes one part of it
        "model_index.json": "{}",
        "unet": {"config.json": json.dumps(unet)},
        "text_encoder": {"config.json": "{}"},
        "vae": {"config.json": '{"latent_channels": 4}'},
        "tokenizer": {"vocab.json": "{}", "merges.txt": ""},
        "scheduler": {"scheduler_config.json": "{}"},
    }
    layouts = {   # None: the part is left out
        "partial": {"unet": None},
        "empty_tokenizer": {"tokenizer": {}},
        "no_tokenizer": {"tokenizer": None},
        "bad_json": {"unet": {"config.json": '{"sample_size": 8,'}},
        "unsupported": {"unet": {"config.json": json.dumps(
            {**unet, "down_block_types": ["SimpleCrossAttnDownBlock2D", "DownBlock2D"]})}},
        "sdxl": {"model_index.json": json.dumps({"_class_name": "StableDiffusionXLPipeline"})},
    }
    dirs = {}
    for name, changes in layouts.items():
        d = tmp_path_factory.mktemp(name)
        for part, files in {**whole, **changes}.items():
            if isinstance(files, str):
                (d / part).write_text(files)
            elif files is not None:
                (d / part).mkdir()
                for file, text in files.items():
                    (d / part / file).write_text(text)
        dirs[name] = str(d)
    single = tmp_path_factory.mktemp("single")
    (single / "sd-v1-5.safetensors").write_bytes(b"\0" * 64)
    dirs["single"] = str(single)
    return dirs


@pytest.mark.parametrize("case", CASES)
def test_one_line_with_its_fix_and_nothing_written(fresh, model_dirs, case):
    argv, env, names = CASES[case]
    argv = [a.format(**model_dirs) for a in argv]
    command = ([sys.executable, "-m", "doit", *argv[1:]] if argv[0] == "doit"
               else [sys.executable, "-m", "stages.runtime.generate", *argv[1:]])
    proc = subprocess.run(command, cwd=fresh, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode != 0, said
    assert len(said) == 1 and "fix:" in said[0] and names in said[0], said
    assert "Traceback" not in proc.stderr
    assert not any((fresh / d).exists() for d in ("build", "dist", "cache", "out"))
