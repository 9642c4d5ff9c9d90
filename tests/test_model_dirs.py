"""Any local SD 1.x / 2.x diffusers directory builds from `path=` alone (issue 14).

The directories are whole pipelines saved with save_pretrained (tests/model_dirs.py): nothing
about them is written by hand into configs/. Each builds and verifies, and `doit generate
--compare` matches diffusers' own StableDiffusionPipeline with the model's own scheduler.
"""

import json
import shutil
import threading

import pytest

import model_dirs
from conftest import doit, generate_report
from stages.engine import config

MIN_PSNR_DB = 35.0   # compiled pipeline vs diffusers, as tests/test_generate.py


def _verified(ws, name, target="llvm"):
    return all(json.loads((ws / f"dist/{name}/{target}/{c}/verify.json").read_text())["passed"]
               for c in model_dirs.SUBFOLDERS)


def _generate(ws, model_dir, tmp_path, *args):
    return generate_report(ws, f"path={model_dir}", "--output", str(tmp_path / "out.png"), *args)


def test_sd2_style_directory_builds_verifies_and_generates_like_diffusers(workspace, tmp_path):
    """Per-block head dims, linear projections, upcast attention, gelu, v-prediction with DDIM,
    a tokenizer that pads with "!": all read from the directory; named after it."""
    model_dir = model_dirs.write(tmp_path / "sd2-tiny", workspace / "build/tiny/model/tokenizer",
                                 model_dirs.SD2)
    doit(workspace, "build", f"path={model_dir}")
    assert _verified(workspace, "sd2-tiny")
    unet = json.loads((workspace / "build/sd2-tiny/unet/weights/config.json").read_text())
    assert unet["attention_head_dim"] == [2, 4] and unet["use_linear_projection"]
    tables = json.loads((workspace / "dist/sd2-tiny/llvm/schedules.json").read_text())
    assert tables["model_scheduler"] == "ddim"
    scheduler = json.loads((workspace / "dist/sd2-tiny/llvm/scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DDIMScheduler"
    assert scheduler["prediction_type"] == "v_prediction"

    report = _generate(workspace, model_dir, tmp_path, "--prompt", "a cat", "--steps", "4",
                       "--scheduler", "ddim", "--compare")
    assert report["reference"] == "diffusers.StableDiffusionPipeline"
    assert report["psnr_db"] == "inf" or report["psnr_db"] >= MIN_PSNR_DB, report
    assert report["prompt_tokens"] == 4   # BOS a cat EOS, counted with the model's own EOS
    empty = _generate(workspace, model_dir, tmp_path, "--prompt", "", "--steps", "2")
    assert empty["prompt"] == "" and empty["prompt_tokens"] == 2


def test_a_toml_overrides_the_directory_key_by_key(workspace, tmp_path, monkeypatch):
    model_dir = model_dirs.write(tmp_path / "sd1", workspace / "build/tiny/model/tokenizer",
                                 model_dirs.SD1)
    plain = config.load(None, "llvm", str(model_dir))
    assert plain.model_name == "sd1" and plain.model["model"]["image_size"] == 64
    assert plain.arch("unet")["block_out_channels"] == [32, 64]
    assert plain.model["scheduler"]["class_name"] == "PNDMScheduler"

    configs = tmp_path / "configs"
    shutil.copytree(config.CONFIGS, configs)
    (configs / "models/mine.toml").write_text('[model]\nimage_size = 128\n'
                                              '[scheduler]\nprediction_type = "v_prediction"\n')
    monkeypatch.setattr(config, "CONFIGS", configs)
    mine = config.load("mine", "llvm", str(model_dir))
    assert mine.model_name == "mine" and mine.model["model"]["image_size"] == 128
    assert mine.model["scheduler"]["prediction_type"] == "v_prediction"
    assert mine.arch("unet") == plain.arch("unet") and mine.pretrained_path == model_dir
    # a name without a TOML only names the build
    assert config.load("other", "llvm", str(model_dir)).model == plain.model


@pytest.fixture(scope="module")
def webgpu_ws(built_webgpu, tmp_path_factory):
    """A copy of the webgpu build's checkout (its cache shared by the directories built in it),
    and where the directories are written."""
    tmp = tmp_path_factory.mktemp("dirs")
    ws = tmp / "ws"
    shutil.copytree(built_webgpu[0], ws, symlinks=True)
    return ws, tmp


def _write(webgpu_ws, style):
    ws, tmp = webgpu_ws
    name = style.lower().replace("_", "-")
    if not (tmp / name).exists():
        model_dirs.write(tmp / name, ws / "build/tiny/model/tokenizer", getattr(model_dirs, style))
    return ws, tmp / name, name


@pytest.mark.long
@pytest.mark.parametrize("style", ["SD1", "SD2"])
def test_directories_build_and_verify_for_webgpu(webgpu_ws, style):
    """Each style for the page's target: every variant that runs on lavapipe verified there.
    The 768-pixel SD 2.x style is verified on llvm (below), not here: its webgpu build and
    lavapipe verify cost CI minutes it does not have (tests/test_sizes.py covers larger
    sizes on webgpu)."""
    ws, model_dir, name = _write(webgpu_ws, style)
    doit(ws, "build", f"path={model_dir}", "target=webgpu")
    manifest = json.loads((ws / f"dist/{name}/webgpu/manifest.json").read_text())
    assert manifest["model"] == name
    for c in model_dirs.SUBFOLDERS:
        for variant in (c, f"{c}-fp16"):
            result = json.loads((ws / f"dist/{name}/webgpu/{variant}/verify.json").read_text())
            assert result["passed"], (variant, result)


@pytest.mark.long
def test_768_pixel_directory_builds_verifies_and_generates(workspace, tmp_path):
    """An SD 2.x 768-v style sample size (96 latents): the image size comes from it, and the
    VAE decoder's GroupNorm over ~1.2M values a group verifies on llvm (group_norm_float64)."""
    model_dir = model_dirs.write(tmp_path / "sd2-768", workspace / "build/tiny/model/tokenizer",
                                 model_dirs.SD2_768)
    doit(workspace, "build", f"path={model_dir}")
    assert _verified(workspace, "sd2-768")
    report = _generate(workspace, model_dir, tmp_path, "--prompt", "a cat", "--steps", "2",
                       "--scheduler", "ddim", "--compare")
    assert report["image_size"] == [768, 768, 3]
    assert report["psnr_db"] == "inf" or report["psnr_db"] >= MIN_PSNR_DB, report


@pytest.mark.long
def test_a_directorys_model_on_the_page_matches_generate(webgpu_ws):
    """The SD 2.x-style model with its own scheduler (DDIM, v-prediction) in Chromium: the
    page's pixels are the llvm build's, and its sampler list marks DDIM as the model's."""
    import test_page
    from stages.runtime import generate, serve

    ws, model_dir, name = _write(webgpu_ws, "SD2")
    doit(ws, "build", f"path={model_dir}")
    doit(ws, "build", f"path={model_dir}", "target=webgpu")
    opts = test_page._opts(scheduler="ddim")
    httpd = serve.server(ws / f"dist/{name}/webgpu", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        job = model_dir.parent / "job.json"
        job.write_text(json.dumps({"route": test_page.ROUTE, "artifacts": str(model_dir.parent),
                                   "images": [{"name": "ddim", "opts": opts}]}))
        report = test_page._node("page_session.mjs",
                                 f"http://127.0.0.1:{httpd.server_address[1]}", str(job))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "error" not in report and report["pageErrors"] == [], report
    image = report["images"][0]
    assert image["ok"], image
    assert "DDIM (the model's own)" in report["start"]["page"]["schedulers"]
    ours = test_page._rgb(image)
    theirs = generate.pixels(ws / f"dist/{name}/llvm", opts["prompt"],
                             negative_prompt=opts["negativePrompt"], seed=opts["seed"],
                             steps=opts["steps"], guidance=opts["guidance"], scheduler="ddim")
    assert generate.psnr(ours, theirs, 255.0) >= MIN_PSNR_DB
