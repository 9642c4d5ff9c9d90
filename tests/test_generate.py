"""stages/runtime/generate.py: text -> PNG with the compiled tiny model (llvm), against diffusers.

Real compiled libraries from dist/tiny/llvm and real diffusers/PyTorch on the same weights
(build/tiny/<component>/weights), the same tokens, the same initial latents (stages/runtime/rng.py)
and the same scheduler. 3 steps per scheduler keep it to about a minute on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stages.runtime import generate as gen

STEPS = 3
MIN_PSNR_DB = 35.0
PROMPT = "a photo of a cat"
SCHEDULERS = ("dpm++2m", "pndm", "euler", "ddim", "lms", "dpm++2m-karras", "euler-a",
              "lcm")


@pytest.fixture(scope="module")
def dist(built) -> Path:
    """dist/tiny/llvm of the session's cold build (tests/conftest.py)."""
    return built[0] / "dist/tiny/llvm"


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (64, 64)
        return np.asarray(im).copy()


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_generate_matches_diffusers(dist, scheduler, tmp_path, record_property):
    out = tmp_path / f"{scheduler}.png"
    report = gen.generate(dist, PROMPT, out, seed=0, steps=STEPS, scheduler=scheduler,
                          compare=True)
    pixels = _png(out)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
    assert pixels.std() > 1, "the image is flat"
    assert np.array_equal(pixels, gen.pixels(dist, PROMPT, seed=0, steps=STEPS,
                                             scheduler=scheduler))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    reference = _png(Path(report["reference_output"]))
    assert report["reference"] == "diffusers.StableDiffusionPipeline"
    assert report["image_size"] == [64, 64, 3] and report["prompt_tokens"] == 7
    record_property("psnr_db", report["psnr_db"])
    print(f"\n{scheduler}: PSNR {report['psnr_db']:.1f} dB, max pixel diff "
          f"{report['max_abs_pixel_diff']}, {report['seconds']}")
    assert report["psnr_db"] >= MIN_PSNR_DB, (
        f"{scheduler}: compiled vs diffusers PSNR {report['psnr_db']:.2f} dB < {MIN_PSNR_DB}")
    assert np.abs(pixels.astype(int) - reference.astype(int)).max() <= 2


def test_loop_is_diffusers_pipeline(dist):
    """The runner's own loop (denoise()) with the torch modules gives what diffusers'
    StableDiffusionPipeline gives: guidance, scale_model_input, step and the VAE scale agree."""
    for scheduler in SCHEDULERS:
        model, job = gen._job(dist, None, PROMPT, "blurry", 5, STEPS, 7.5, scheduler, None, None)
        ours, _ = gen._run_torch(model, job, use_pipeline=False)
        theirs, name = gen._run_torch(model, job, use_pipeline=True)
        assert name == "diffusers.StableDiffusionPipeline"
        assert gen.psnr(gen.unit_image(ours), gen.unit_image(theirs)) > 100, scheduler


def test_low_guidance_compares_with_torch_loop(dist, tmp_path):
    report = gen.generate(dist, PROMPT, tmp_path / "g.png", negative_prompt="dark", seed=3,
                          steps=2, guidance=0.0, compare=True)
    assert report["reference"].startswith("torch modules")
    assert report["psnr_db"] >= MIN_PSNR_DB
    # guidance 0 is the negative prompt alone; 1 is the prompt alone: different images
    g1 = gen.pixels(dist, PROMPT, negative_prompt="dark", seed=3, steps=2, guidance=1.0)
    assert not np.array_equal(_png(tmp_path / "g.png"), g1)


def test_seed_is_reproducible(dist):
    a = gen.pixels(dist, PROMPT, seed=42, steps=STEPS)
    b = gen.pixels(dist, PROMPT, seed=42, steps=STEPS)
    c = gen.pixels(dist, PROMPT, seed=43, steps=STEPS)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1
    top = gen.pixels(dist, PROMPT, seed=2**32 - 1, steps=1)
    assert top.shape == (64, 64, 3)


def test_empty_prompt(dist, tmp_path):
    report = gen.generate(dist, "", tmp_path / "empty.png", steps=STEPS)
    assert report["prompt_tokens"] == 2          # BOS, EOS
    assert _png(tmp_path / "empty.png").std() > 1


def test_long_prompt_is_truncated(dist, tmp_path):
    words = " ".join(["castle", "river", "mountain", "sunset", "forest"] * 100)   # 500 words
    report = gen.generate(dist, words, tmp_path / "long.png", steps=STEPS)
    assert report["prompt_tokens"] == 77
    long = _png(tmp_path / "long.png")
    # only the first 75 words (tokens) count: adding more words changes nothing
    more = gen.pixels(dist, words + " ocean ocean ocean", steps=STEPS)
    assert np.array_equal(long, more)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be an integer in 1..50"),
    ({"steps": 51}, "steps must be an integer in 1..50"),
    ({"steps": 2.5}, "steps must be an integer in 1..50"),
    ({"guidance": -1}, "guidance must be a number in 0..30"),
    ({"guidance": 30.5}, "guidance must be a number in 0..30"),
    ({"guidance": float("nan")}, "guidance must be a number in 0..30"),
    ({"scheduler": "heun"}, "unknown scheduler 'heun'"),
    ({"seed": -1}, "a uint32"),
    ({"seed": 2**32}, "a uint32"),
    ({"seed": 1.5}, "a uint32"),
    ({"seed": True}, "a uint32"),
    ({"prompt": None}, "prompt must be a string"),
])
def test_refused(dist, kwargs, message, tmp_path):
    args = {"prompt": PROMPT, "output": tmp_path / "x.png", **kwargs}
    with pytest.raises(gen.GenerateError, match="fix: ") as e:
        gen.generate(dist, **args)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x.png").exists()


def test_missing_dist(dist, tmp_path):
    with pytest.raises(gen.GenerateError, match="run doit build first"):
        gen.generate(tmp_path / "dist/tiny/llvm", PROMPT, tmp_path / "x.png", steps=1)


def test_cli(dist, tmp_path, capsys):
    out, rep = tmp_path / "cli.png", tmp_path / "report.json"
    rc = gen.main(["--model", "tiny", "--dist", str(dist), "--prompt", PROMPT, "--negative-prompt", "", "--seed", "7",
                   "--steps", "2", "--guidance", "5", "--scheduler", "euler",
                   "--output", str(out), "--report", str(rep)])
    assert rc == 0
    report = json.loads(rep.read_text())
    assert report["output"] == str(out) and report["seed"] == 7 and report["scheduler"] == "euler"
    assert np.array_equal(_png(out), gen.pixels(dist, PROMPT, seed=7, steps=2, guidance=5,
                                                scheduler="euler"))
    capsys.readouterr()
    assert gen.main(["--steps", "0", "--output", str(tmp_path / "y.png")]) == 2
    assert "fix: pass --steps" in capsys.readouterr().err


def test_doit_generate_writes_the_png_of_the_python_runner(dist, workspace, tmp_path):
    from conftest import doit

    ws = workspace   # a copy of the session's build
    out = tmp_path / "doit.png"
    report = ws / "dist" / "tiny" / "llvm" / "build-report.json"
    before = report.read_bytes()
    proc = doit(ws, "generate", "--prompt", PROMPT, "--seed", "11", "--steps", "2",
                "--scheduler", "pndm", "--output", str(out))
    assert "stages: 0 built" in proc.stdout          # the build it depends on was up to date
    assert report.read_bytes() == before             # and its report is the build's still
    assert np.array_equal(_png(out), gen.pixels(dist, PROMPT, seed=11, steps=2,
                                                scheduler="pndm"))
    bad = doit(ws, "generate", "--steps", "51", check=False)
    assert bad.returncode != 0 and "fix:" in bad.stdout + bad.stderr
    bad = doit(ws, "generate", "--scheduler", "foo", check=False)
    said = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "unknown scheduler 'foo'; fix: pass --scheduler" in said
    assert "usage:" not in said


# --- image-to-image ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def init_png(dist, tmp_path_factory) -> Path:
    """A 64x64 picture to start from: the text-to-image of another prompt (an image the VAE
    can read, not noise)."""
    path = tmp_path_factory.mktemp("init") / "init.png"
    gen.generate(dist, "a red house by a lake", path, seed=9, steps=STEPS)
    return path


@pytest.mark.parametrize("scheduler, steps, strength", [
    ("dpm++2m", 6, 0.5), ("pndm", 6, 0.7), ("lms", 8, 0.6), ("euler-a", 4, 1.0),
    ("ddim", 5, 0.4), ("lcm", 4, 0.5)])
def test_image_to_image_matches_diffusers(dist, init_png, scheduler, steps, strength, tmp_path):
    """--init-image against diffusers' StableDiffusionImg2ImgPipeline on the same weights, the
    same image, the same noise and encoder sample (the seeded generator, given to diffusers):
    the compiled VAE encoder, add_noise and the schedule's end, multistep warm-ups included."""
    out = tmp_path / "i2i.png"
    report = gen.generate(dist, PROMPT, out, seed=4, steps=steps, scheduler=scheduler,
                          init_image=init_png, strength=strength, compare=True)
    assert report["reference"] == "diffusers.StableDiffusionImg2ImgPipeline"
    assert report["strength"] == strength and report["init_image"] == str(init_png)
    iterations = len(gen.make_scheduler(gen.Model(dist), scheduler, steps).timesteps)
    assert report["unet_calls"] == iterations - (steps - int(steps * strength))
    assert report["seconds"]["vae_encoder_s"] > 0
    print(f"\n{scheduler} img2img: PSNR {report['psnr_db']:.1f} dB")
    assert report["psnr_db"] >= MIN_PSNR_DB
    # the image counts: text-to-image of the same settings is another picture
    assert not np.array_equal(_png(out), gen.pixels(dist, PROMPT, seed=4, steps=steps,
                                                    scheduler=scheduler))


def test_image_to_image_at_low_guidance_compares_with_torch_loop(dist, init_png, tmp_path):
    report = gen.generate(dist, PROMPT, tmp_path / "g.png", negative_prompt="dark", seed=3,
                          steps=4, guidance=1.0, init_image=init_png, strength=0.5,
                          compare=True)
    assert report["reference"].startswith("torch modules")
    assert report["psnr_db"] >= MIN_PSNR_DB


def test_init_image_of_another_shape_is_cropped_and_resized(dist, init_png, tmp_path):
    """A wide image: its centered square, resized to the model's 64x64; a picture made of two
    copies of the init image side by side (and a band above) gives the init image's result."""
    from PIL import Image

    init = np.asarray(Image.open(init_png))
    wide = np.zeros((128, 256, 3), np.uint8)
    wide[:, 64:192] = np.asarray(Image.fromarray(init).resize((128, 128), Image.NEAREST))
    Image.fromarray(wide).save(tmp_path / "wide.png")
    _, pixels = gen.read_image(tmp_path / "wide.png", (64, 64))
    assert pixels.shape == (64, 64, 3)
    assert np.abs(pixels.astype(int) - init.astype(int)).mean() < 8


@pytest.mark.parametrize("kwargs, message", [
    ({"strength": 0.0}, "strength must be a number in 0.05..1"),
    ({"strength": 1.5}, "strength must be a number in 0.05..1"),
    ({"strength": 0.2, "steps": 3}, "strength 0.2 at 3 steps runs no step"),
    ({"init_image": "missing.png"}, "no such image"),
    ({"init_image": "not-an-image.png"}, "not an image that can be read"),
])
def test_image_to_image_refused(dist, init_png, kwargs, message, tmp_path):
    (tmp_path / "not-an-image.png").write_text("hello")
    args = {"prompt": PROMPT, "output": tmp_path / "x.png", "init_image": init_png, **kwargs}
    if isinstance(args["init_image"], str):
        args["init_image"] = tmp_path / args["init_image"]
    with pytest.raises(gen.GenerateError, match="fix: ") as e:
        gen.generate(dist, **args)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(gen.GenerateError, match="also pass --init-image"):
        gen.generate(dist, PROMPT, tmp_path / "x.png", strength=0.5)


def test_doit_generate_image_to_image(dist, workspace, init_png, tmp_path):
    from conftest import generate_report

    report = generate_report(workspace, "--prompt", PROMPT, "--seed", "2", "--steps", "4",
                             "--init-image", str(init_png), "--strength", "0.5",
                             "--output", str(tmp_path / "d.png"))
    assert report["unet_calls"] == 2 and report["strength"] == 0.5
    assert np.array_equal(_png(tmp_path / "d.png"),
                          gen.pixels(dist, PROMPT, seed=2, steps=4, init_image=init_png,
                                     strength=0.5))


def test_the_png_carries_its_settings(dist, init_png, tmp_path):
    """The PNG's text chunks: "parameters" as popular SD front ends write it, "websd" the
    settings the page's form takes back (web/src/png_settings.js)."""
    from PIL import Image

    gen.generate(dist, "a café at night", tmp_path / "s.png", negative_prompt="fog", seed=6,
                 steps=2, init_image=init_png, strength=0.5)
    with Image.open(tmp_path / "s.png") as im:
        text = dict(im.text)
    assert json.loads(text["websd"]) == {
        "prompt": "a café at night", "negativePrompt": "fog", "guidance": 7.5, "steps": 2,
        "seed": 6, "scheduler": "dpm++2m", "strength": 0.5, "model": "tiny", "size": "64x64"}
    assert text["parameters"] == ("a café at night\nNegative prompt: fog\nSteps: 2, Sampler: "
                                  "dpm++2m, CFG scale: 7.5, Seed: 6, Size: 64x64, Model: tiny, "
                                  "Denoising strength: 0.5")
