"""The page (web/index.html + web/src/app.js) generates images in headless Chromium under WebGPU.

The served directory is dist/tiny/webgpu of the session's `doit build target=webgpu` (the
model, tokenizer, scheduler tables, and the page bundled by the bundle stage), served by
stages/runtime/serve.py. web/test/page_session.mjs drives one Chromium (playwright-core,
Debian's /usr/bin/chromium, SwiftShader WebGPU) through a whole visit: the limit check, images
for every scheduler, refused settings, a screenshot, a reload from the Cache API, a tampered
cached shard, Cancel, a lost device. The tests below each check one part of its report; the
images are compared with the Python runner (stages/runtime/generate.py, the llvm build) by PSNR.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "build" / "test-artifacts" / "page"

# what the page's tests need (test_first_run.py takes the same)
pytestmark = [
    pytest.mark.skipif(not (WEB / "node_modules" / "playwright-core").is_dir(),
                       reason="web/node_modules is missing; fix: sh stages/toolchain/setup.sh"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="no /usr/bin/chromium; fix: sh stages/toolchain/setup.sh"),
    pytest.mark.skipif(shutil.which("emcc") is None,
                       reason="no emscripten (webgpu build); fix: sh stages/toolchain/setup.sh"),
]

PROMPT = "a photograph of an astronaut riding a horse"
NEGATIVE = "blurry"
SEED, STEPS, GUIDANCE = 1234, 3, 7.5
SCHEDULERS = ("dpm++2m", "pndm", "euler", "ddim", "lms", "dpm++2m-karras", "euler-a",
              "lcm")
LONG_PROMPT = " ".join(["castle", "on", "a", "hill", "at", "sunset,", "oil", "painting"] * 63)


# --- fixtures ----------------------------------------------------------------------------------

ROUTE = os.environ.get("WEBSD_PAGE_ROUTE", "lavapipe")   # web/test/chromium.mjs ROUTES


def _opts(**kw):
    base = {"prompt": PROMPT, "negativePrompt": NEGATIVE, "seed": SEED, "steps": STEPS,
            "guidance": GUIDANCE, "scheduler": "dpm++2m"}
    return {**base, **kw}


IMAGES = [{"name": s, "opts": _opts(scheduler=s)} for s in SCHEDULERS] + [
    {"name": "empty", "opts": _opts(prompt="", negativePrompt="", seed=7)},
    {"name": "long", "opts": _opts(prompt=LONG_PROMPT, seed=8, scheduler="euler")},
    # enough steps for decoded previews (pipeline.js PREVIEW_SHARE), which must leave the image
    {"name": "previews", "opts": _opts(steps=16, scheduler="euler", seed=5)},
]
# Image-to-image: the images to start from (written by the session fixture, 64x64 as the model,
# so the page's canvas and the Python runner read the same pixels), chosen with the file picker
# or dropped on the page; then the text-to-image of IMAGES[0] again without an image.
INIT_A, INIT_B = ARTIFACTS / "init-a.png", ARTIFACTS / "init-b.png"
IMG2IMG = [
    {"name": "img2img dpm++2m", "opts": _opts(steps=4, strength=0.75), "initImage": str(INIT_A)},
    {"name": "text again", "opts": IMAGES[0]["opts"], "initImage": None},
    {"name": "img2img pndm", "opts": _opts(steps=5, strength=0.6, scheduler="pndm", seed=3),
     "initImage": str(INIT_B), "drop": True},
    {"name": "img2img euler-a", "opts": _opts(steps=4, strength=1.0, scheduler="euler-a"),
     "initImage": str(INIT_A)},
]
INVALID = [{"name": "steps 0", "opts": _opts(steps=0)}, {"name": "steps 51", "opts": _opts(steps=51)},
           {"name": "guidance -1", "opts": _opts(guidance=-1)},
           {"name": "guidance 31", "opts": _opts(guidance=31)},
           # with the image of the last IMG2IMG entry: 3 x 0.2 leaves no step
           {"name": "strength 0.2", "opts": _opts(steps=3, strength=0.2)}]


def _write_init_images() -> None:
    """Two 64x64 pictures with shapes and gradients (not noise: the VAE sees an image)."""
    from PIL import Image

    y, x = np.mgrid[0:64, 0:64].astype(np.float64)
    disk = ((x - 22) ** 2 + (y - 30) ** 2 < 15 ** 2)
    a = np.stack([40 + 3 * x, 60 + 2 * y, 200 - 150 * disk], -1)
    b = np.stack([255 - 3 * y, 90 + 120 * (x > y), 30 + 3 * x], -1)
    for path, img in ((INIT_A, a), (INIT_B, b)):
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(path)


def _node(script: str, *args: str, timeout: int = 540) -> dict:
    proc = subprocess.run([shutil.which("node") or "node", str(WEB / "test" / script), *args],
                          cwd=WEB, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def dist(built, built_webgpu) -> dict[str, Path]:
    """dist/tiny/<target> of the session's builds: llvm (the Python runner), webgpu (the page)."""
    webgpu = built_webgpu[0] / "dist" / "tiny" / "webgpu"
    assert (webgpu / "index.html").is_file() and (webgpu / "app.js").is_file()
    return {"llvm": built[0] / "dist" / "tiny" / "llvm", "webgpu": webgpu}


def serving(root: Path):
    """root served on http://127.0.0.1:<free port> by stages/runtime/serve.py, quietly: a
    generator for a module fixture to yield from (the page's tests share it)."""
    from stages.runtime import serve

    class Quiet(serve.Handler):   # keep pytest's output readable
        def log_message(self, *args):
            pass

    httpd = serve.server(root, 0)
    httpd.RequestHandlerClass = functools.partial(Quiet, directory=str(root))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def origin(dist):
    """The served model directory (dist/tiny/webgpu)."""
    yield from serving(dist["webgpu"])


@pytest.fixture(scope="module")
def session(origin, tmp_path_factory) -> dict:
    """One visit of the page (web/test/page_session.mjs), its report."""
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    _write_init_images()
    job = {"route": ROUTE, "artifacts": str(ARTIFACTS), "screenshotAfter": "euler",
           "images": IMAGES + IMG2IMG, "invalid": INVALID,
           "cancel": _opts(steps=50, scheduler="euler", strength=1.0),
           "reload": IMAGES[0]["opts"], "restore": True, "narrow": True,
           "keyboard": IMAGES[0]["opts"],
           "cancelLoad": IMAGES[0]["opts"], "history": True}
    job_path = tmp_path_factory.mktemp("job") / "job.json"
    job_path.write_text(json.dumps(job))
    report = _node("page_session.mjs", origin, str(job_path))
    slim = json.loads(json.dumps(report, default=str))
    for part in [*slim.get("images", []), slim.get("reload", {}), slim.get("tamper", {}),
                 slim.get("lost", {}).get("after", {})]:
        part.pop("pixels", None)
    (ARTIFACTS / "session.json").write_text(json.dumps(slim, indent=1))
    print(f"\npage artifacts (screenshots, session.json): {ARTIFACTS}")
    assert "error" not in report, f"the session stopped: {report['error']}\n" \
                                  f"console: {report['console'][-20:]}"
    assert report["pageErrors"] == [], report["pageErrors"]
    return report


def _rgb(result: dict) -> np.ndarray:
    rgba = np.asarray(result["pixels"], np.uint8).reshape(result["height"], result["width"], 4)
    return rgba[..., :3]


def _reference(dist: dict, opts: dict, init_image: str | None = None) -> np.ndarray:
    from stages.runtime import generate

    return generate.pixels(dist["llvm"], opts["prompt"], negative_prompt=opts["negativePrompt"],
                           seed=opts["seed"], steps=opts["steps"], guidance=opts["guidance"],
                           scheduler=opts["scheduler"], init_image=init_image,
                           strength=opts.get("strength") if init_image else None)


def _image(session, name):
    return next(im for im in session["images"] if im["name"] == name)


# --- tests -------------------------------------------------------------------------------------

def test_images_match_the_python_runner(dist, session):
    """Every scheduler, an empty prompt and a 500-word prompt: the page's pixels are the llvm
    build's (stages/runtime/generate.py) for the same prompt, seed, steps, guidance and scheduler."""
    from stages.runtime import generate

    lines = []
    for spec in IMAGES:
        im = _image(session, spec["name"])
        assert im["ok"], (spec["name"], im.get("error"), im["page"])
        assert (im["width"], im["height"]) == (64, 64)
        assert im["page"]["gpuError"] == "" and im["page"]["message"].startswith("Done")
        ours, theirs = _rgb(im), _reference(dist, spec["opts"])
        db = generate.psnr(ours, theirs, 255.0)
        lines.append(f"{spec['name']:>8}: PSNR {db:6.2f} dB, max |diff| "
                     f"{int(np.abs(ours.astype(int) - theirs).max())}, {im['secondsPerStep']:.3f} "
                     f"s/step, {im['seconds']:.2f} s in the page ({im['precision']})")
        assert db >= 35, f"{spec['name']}: PSNR {db:.2f} dB < 35 against stages/runtime/generate.py"
    print("\nChromium (" + ROUTE + ") vs stages/runtime/generate.py (llvm):\n" + "\n".join(lines))


def test_image_to_image_matches_the_python_runner(dist, session):
    """An image chosen with the file picker or dropped on the page: the page's image-to-image
    (the VAE encoder under WebGPU, the seeded latent sample, the schedule's end from the
    restart tables) against stages/runtime/generate.py --init-image on the llvm build."""
    from stages.runtime import generate

    lines = []
    for spec in IMG2IMG:
        im = _image(session, spec["name"])
        assert im["ok"], (spec["name"], im.get("error"), im["page"])
        init = spec["initImage"]
        if init is None:   # the image removed: text-to-image again, as before any image
            assert im["initImage"] is None
            assert np.array_equal(_rgb(im), _rgb(_image(session, IMAGES[0]["name"])))
            continue
        assert im["initImage"] == {"name": Path(init).name, "width": 64, "height": 64}
        opts = spec["opts"]
        first = opts["steps"] - min(int(opts["steps"] * opts["strength"]), opts["steps"])
        assert im["page"]["denoise"].startswith("done"), im["page"]
        ours, theirs = _rgb(im), _reference(dist, opts, init)
        db = generate.psnr(ours, theirs, 255.0)
        lines.append(f"{spec['name']:>16}: PSNR {db:6.2f} dB, {opts['steps'] - first} of "
                     f"{opts['steps']} steps ({'dropped' if spec.get('drop') else 'file picker'})")
        assert db >= 35, f"{spec['name']}: PSNR {db:.2f} dB < 35 against the Python runner"
        # the image counts: the same settings without it give another picture
        assert not np.array_equal(theirs, _reference(dist, opts)), spec["name"]
    print("\nimage-to-image, Chromium vs stages/runtime/generate.py:\n" + "\n".join(lines))


def test_the_page_loads_from_the_network_first_and_says_what_it_runs(session):
    start = session["start"]
    assert start["page"]["imageSize"] == "64x64"
    assert start["page"]["precision"].startswith("float32")   # no shader-f16 on CPU WebGPU
    assert start["status"]["precision"] == "float32"
    # the build offers the subgroup-matrix flavor too; Chromium's CPU adapter (SwiftShader) has
    # neither shader-f16 nor subgroup matrices: the page takes the plainest flavor
    assert start["status"]["flavor"] == "float32"
    # the plain URL: the page picked the adapter itself, and says which
    if ROUTE == "lavapipe":   # SwiftShader (core, software) or lavapipe (compatibility): lavapipe
        assert start["status"]["adapter"]["featureLevel"] == "compatibility", start["status"]
        assert not start["status"]["adapter"]["software"]
        assert "(compatibility mode)" in start["page"]["adapter"]
    # the GPU memory it expects, before loading: manifest.json's requirements
    assert re.fullmatch(r"\d+\.\d MB", start["page"]["gpuMemory"]), start["page"]
    bins = [f for f in session["firstLoad"]["files"] if f["path"].endswith(".bin")]
    assert len(bins) == 4 and {f["source"] for f in bins} == {"network"}, bins
    assert all("/params/" in f["path"] and "-fp16" not in f["path"] for f in bins)
    assert "4 from network" in _image(session, "dpm++2m")["page"]["download"]
    # the samplers the build measured, the model's own (the tiny model's PNDM) marked
    assert start["page"]["schedulers"] == [
        "DPM-Solver++ 2M", "PNDM (the model's own)", "Euler", "DDIM", "LMS",
        "DPM-Solver++ 2M Karras", "Euler ancestral", "LCM"]


def test_loading_shows_its_phases_with_their_times(session):
    """The first Generate loads the model: the page says what it is doing with the time so far,
    then how long the parameters and the GPU shaders took, and how many pipelines each
    component compiled; the message of that image says the load time too, later ones not."""
    first, second = _image(session, "dpm++2m"), _image(session, "pndm")
    assert re.fullmatch(r"Ready in \d+\.\d s: parameters \d+\.\d s, GPU shaders \d+\.\d s "
                        r"\(text_encoder \d+, unet \d+, vae_decoder \d+, vae_encoder \d+ "
                        r"pipelines\)", first["page"]["load"]), first["page"]["load"]
    assert "after loading the model in" in first["page"]["message"]
    assert "after loading" not in second["page"]["message"]
    load, again = session["firstLoad"]["load"], session["reload"]["load"]
    assert load["shaders_s"] > 0 and load["params_s"] > 0 and load["pipelines"]["unet"] > 10
    assert load["seconds"] >= load["shaders_s"] + load["params_s"]
    # a second visit: every shard from the Cache API (test_reload_...) and the compiled shaders
    # from the browser's and the driver's caches
    print(f"\nfirst visit: model ready in {load['seconds']:.1f} s (parameters "
          f"{load['params_s']:.1f} s, shaders {load['shaders_s']:.1f} s); second visit: "
          f"{again['seconds']:.1f} s (parameters {again['params_s']:.1f} s, shaders "
          f"{again['shaders_s']:.1f} s)")
    assert again["seconds"] < load["seconds"], (load, again)


# The longest the page's main thread may be busy at once (a long task, the browser's own
# measure). The model runs in a worker (model_worker.js): on the main thread a component's first
# run (tvmjs encodes every dispatch of a VM call in one task) and its load were tasks of
# 190-210 ms on a busy 2-core machine, and loading the tokenizer one of 180-205 ms.
LONGEST_TASK_MS = 200


def test_the_main_thread_is_never_blocked_long(session):
    """While the model loads and generates (from the page's startup checks on: before them the
    browser parses the page and its script, 50-220 ms tasks on a busy machine whatever the
    bundle, bench/results/page_first_paint.json)."""
    for visit in ("firstLoad", "reload"):
        ready_at = session[visit]["readyAt"]
        assert ready_at is not None, visit
        tasks = [t for t in session[visit]["longTasks"] if t["start"] >= ready_at]
        worst = sorted(tasks, key=lambda t: -t["ms"])[:5]
        print(f"\n{visit}: {len(tasks)} long tasks after ready, the longest {worst}; before "
              f"it {[t['ms'] for t in session[visit]['longTasks'] if t['start'] < ready_at]}")
        assert not worst or worst[0]["ms"] < LONGEST_TASK_MS, (visit, worst)


def test_decoded_previews_appear_and_leave_the_image_as_it_was(session):
    """A 16-step run gets previews from the VAE decoder (within pipeline.js PREVIEW_SHARE of
    its time); test_images_match_the_python_runner checks its final image as every other."""
    im = _image(session, "previews")
    assert im["ok"] and len(im["previews"]) >= 1, im.get("previews")
    assert sum(im["previews"]) <= 0.3 * im["secondsPerStep"] * 16 + max(im["previews"]), im
    assert all(len(_image(session, n)["previews"]) == 0 for n in ("dpm++2m", "pndm"))  # 3 steps


def test_the_download_figure_is_what_a_first_visit_fetches(dist, session):
    """The page says what a first visit downloads for its flavor (manifest.json requirements):
    the page itself and every model file it reads, byte for byte."""
    manifest = json.loads((dist["webgpu"] / "manifest.json").read_text())
    figure = manifest["requirements"]["float32"]["download_bytes"]
    read = {f["path"]: f["bytes"] for f in session["firstLoad"]["files"]}
    page = sum((dist["webgpu"] / n).stat().st_size for n in ("index.html", "app.js",
                                                          "model_worker.js"))
    assert sum(read.values()) + page == figure, (figure, page, read)
    assert session["start"]["page"]["downloadSize"] == f"{figure / 1e6:.1f} MB"


def test_the_keyboard_reaches_every_field_generates_and_cancels(session):
    keys = session["keyboard"]
    assert keys["unnamed"] == [], keys["unnamed"]
    # Tab walks every enabled control in reading order (the size menu is off with one size)
    assert keys["tabOrder"] == keys["focusable"][:len(keys["tabOrder"])], keys
    assert keys["tabOrder"][:6] == ["prompt", "negative-prompt", "guidance", "steps", "seed",
                                    "random-seed"] and "generate" in keys["tabOrder"], keys
    generated = keys["generated"]
    assert generated["page"]["message"].startswith("Done"), generated["page"]
    first = np.asarray(generated["pixels"], np.uint8).reshape(64, 64, 4)[..., :3]
    assert np.array_equal(first, _rgb(_image(session, IMAGES[0]["name"])))
    assert keys["cancelled"]["cancelMs"] < 1000, keys["cancelled"]


def test_token_counts_are_shown_and_truncation_announced(session):
    """After a run the page says how many tokens each prompt has of the 75 the encoder reads,
    and that a 500-word prompt is cut."""
    assert re.fullmatch(r"prompt: \d+ / 75 tokens; negative prompt: \d+ / 75 tokens",
                        _image(session, "dpm++2m")["page"]["tokens"])
    long = _image(session, "long")["page"]["tokens"]
    assert re.match(r"prompt: \d{3,} tokens, only the first 75 are used; negative prompt", long)


def test_screenshot_shows_an_image(session):
    from PIL import Image

    shot = Path(session["screenshot"])
    image = ARTIFACTS / "image.png"
    print(f"\nscreenshot: {shot}\nimage area: {image}")
    assert shot.is_file() and image.is_file()
    pixels = np.asarray(Image.open(image).convert("RGB"), np.float64)
    assert pixels.var() > 0, "the image area of the page is blank"
    # the canvas holds the last image of the page (euler), not a preview
    assert float(np.asarray(_rgb(_image(session, "euler")), np.float64).var()) > 0


def test_save_png_gives_the_image_with_its_settings(dist, session, tmp_path):
    """Save PNG: the last image, its settings in the file's text chunks as the Python runner
    writes them, and a name no other save of the visit has."""
    from PIL import Image

    from stages.runtime import generate

    saved = session["saved"]
    assert re.fullmatch(rf"websd-tiny-{SEED}-\d{{8}}-\d{{6}}\.png", saved["name"]), saved
    assert saved["again"] != saved["name"] and saved["again"].startswith(saved["name"][:-4])
    with Image.open(saved["path"]) as im:
        png, chunks = np.asarray(im.convert("RGB")), dict(im.text)
    assert np.array_equal(png, _rgb(_image(session, "euler")))
    opts = _image(session, "euler")["opts"]
    settings = json.loads(chunks["websd"])
    assert settings == {**opts, "model": "tiny", "size": "64x64"}
    # the same settings through `doit generate`'s writer: the same two chunks
    generate.write_png(tmp_path / "py.png", png, {**opts, "guidance": float(opts["guidance"]),
                                                  "model": "tiny", "size": "64x64"})
    with Image.open(tmp_path / "py.png") as im:
        assert im.text["parameters"] == chunks["parameters"]
        assert json.loads(im.text["websd"]) == settings
    assert chunks["parameters"].startswith(PROMPT + "\nNegative prompt: blurry\nSteps: 3, ")


def test_the_strip_of_this_visits_images_goes_back_to_one(session):
    history = session["history"]
    ok = [im for im in session["images"] if im["ok"]]
    assert history["count"] == len(ok) == len(IMAGES) + len(IMG2IMG)
    first = _image(session, IMAGES[0]["name"])
    assert np.array_equal(np.asarray(history["canvas"], np.uint8).reshape(64, 64, 4)[..., :3],
                          _rgb(first))
    assert history["form"]["seed"] == str(first["opts"]["seed"])
    assert history["form"]["scheduler"] == first["opts"]["scheduler"]


def test_a_dropped_png_restores_its_settings(session):
    restore = session["restore"]
    assert restore["page"]["message"].startswith(f"Settings restored from {session['saved']['name']}")
    opts = _image(session, "euler")["opts"]
    form = restore["form"]
    assert (form["prompt"], form["seed"], form["scheduler"], form["steps"]) == \
        (opts["prompt"], str(opts["seed"]), opts["scheduler"], str(opts["steps"]))


def test_a_refused_field_is_marked_and_focused(session):
    case = next(c for c in session["invalid"] if c["name"] == "steps 51")
    assert case["status"]["invalid"] == ["steps"] and case["status"]["focused"] == "steps"


def test_a_phone_width_shows_the_image_first_and_every_field(session):
    narrow = session["narrow"]
    assert narrow["imageTop"] < narrow["formTop"], narrow
    assert narrow["rightmost"] <= narrow["width"] and narrow["scrollWidth"] <= narrow["width"], narrow


def test_empty_and_500_word_prompts_work(session):
    assert len(LONG_PROMPT.split()) == 504
    for name in ("empty", "long"):
        im = _image(session, name)
        assert im["ok"] and im["page"]["message"].startswith("Done"), (name, im)


def test_out_of_range_settings_are_refused(session):
    for case in session["invalid"]:
        key = next(k for k in ("steps", "guidance", "strength") if k in case["name"])
        field = {"steps": "Steps", "guidance": "Guidance scale", "strength": "Strength"}[key]
        assert not case["ok"] and "OptionError" in case["error"], case
        assert case["page"]["message"].startswith(field), case["page"]
        assert str(case["opts"][key]) in case["page"]["message"]
        assert case["page"]["denoise"] == case["pageBefore"]["denoise"], "a refused run generated"
        assert case["wallMs"] < 5000 and case["phaseAfter"] == "ready"


def test_cancel_stops_a_run(session):
    cancel = session["cancel"]
    assert not cancel["ok"] and "AbortError" in cancel["error"], cancel
    assert cancel["page"]["message"] == "Cancelled."
    assert re.fullmatch(r"cancelled after step \d+ of 50", cancel["page"]["denoise"]), cancel["page"]
    # the settings are locked while a run goes on, and free again once it has stopped
    assert session["cancelRunning"]["settingsLocked"]
    assert not cancel["page"]["settingsLocked"] and not cancel["page"]["generateDisabled"]
    # the last finished image stays on screen and can still be saved
    assert cancel["canvasKept"] and not cancel["page"]["saveDisabled"]


def test_cancel_while_loading_acts_within_a_second(session):
    run = session["cancelLoad"]
    assert not run["ok"] and "AbortError" in run["error"], run
    assert run["cancelMs"] < 1000, run["cancelMs"]
    assert run["page"]["message"].startswith("Cancelled"), run["page"]
    assert not run["page"]["generateDisabled"]


def test_reload_takes_every_shard_from_the_cache(session):
    reload = session["reload"]
    assert reload["ok"], reload
    bins = [f for f in reload["files"] if f["path"].endswith(".bin")]
    assert len(bins) == 4 and {f["source"] for f in bins} == {"cache"}, bins
    assert reload["binRequests"] == []
    assert "4 shard(s) from cache, 0 from network" in reload["page"]["download"]
    assert np.array_equal(_rgb(reload), _rgb(_image(session, "dpm++2m")))


def test_a_tampered_cached_shard_is_fetched_again(session):
    tamper = session["tamper"]
    assert tamper["ok"], tamper
    victim = tamper["url"].split("/", 3)[3]
    entry = next(f for f in tamper["files"] if f["path"] == victim)
    assert entry["source"] == "network" and "did not match" in entry["replaced"], entry
    others = [f for f in tamper["files"] if f["path"].endswith(".bin") and f["path"] != victim]
    assert len(others) == 3 and {f["source"] for f in others} == {"cache"}
    assert tamper["binRequests"] == [tamper["url"]]
    assert np.array_equal(_rgb(tamper), _rgb(_image(session, "dpm++2m")))


def test_a_lost_device_is_reported_and_recovered(session):
    lost = session["lost"]
    assert "device was lost" in lost["page"]["gpuError"], lost["page"]
    assert lost["after"]["ok"], lost["after"]
    assert lost["pageAfter"]["gpuError"] == ""
    assert np.array_equal(_rgb(lost["after"]), _rgb(_image(session, "dpm++2m")))


def test_limits_below_the_model_are_named(session):
    shown = session["limits"]["page"]
    assert shown["generateDisabled"]
    assert "maxStorageBufferBindingSize" in shown["gpuError"]
    assert str(2 ** 40) in shown["gpuError"] and "this GPU offers" in shown["gpuError"]


@pytest.mark.skipif(not (WEB / "node_modules" / "webgpu").is_dir(), reason="npm webgpu missing")
def test_float16_variants_run_where_the_gpu_has_shader_f16(dist, origin, tmp_path):
    """CPU WebGPU in Chromium has no shader-f16; Dawn in Node (npm webgpu, lavapipe) has. The
    page's modules (web/test/pipeline_node.mjs) pick the float16 variants there, and their image
    still matches the float32 Python runner."""
    from stages.runtime import generate

    specs = [s for s in IMAGES if s["name"] in ("dpm++2m", "long")]
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"images": specs}))
    report = _node("pipeline_node.mjs", origin, str(job), timeout=300)
    if report["precision"] != "float16":
        pytest.skip(f"Dawn's adapter has no shader-f16 ({report['adapter']})")
    bins = [f["path"] for f in report["files"] if f["path"].endswith(".bin")]
    assert len(bins) == 4 and all("-fp16/" in p for p in bins), bins
    lines = []
    for spec, im in zip(specs, report["images"]):
        db = generate.psnr(_rgb(im), _reference(dist, spec["opts"]), 255.0)
        lines.append(f"{spec['name']:>8}: PSNR {db:6.2f} dB, {im['secondsPerStep']:.3f} s/step (float16)")
        assert db >= 35, f"{spec['name']} float16: PSNR {db:.2f} dB < 35"
    print("\nNode + Dawn (" + report["adapter"]["description"] + ") vs stages/runtime/generate.py:\n"
          + "\n".join(lines))


def test_the_page_picks_the_fastest_flavor_the_adapter_can_run(dist):
    """gpu.js chooseFlavor on the built manifest's requirements, for the adapters that matter:
    the matrix units where the adapter has subgroup matrices and 32-wide subgroups, else float16
    where it has shader-f16, else float32."""
    requirements = json.loads((dist["webgpu"] / "manifest.json").read_text())["requirements"]
    assert set(requirements) == {"float32", "float16", "float16+subgroup-matrix"}
    adapters = {
        "h200": (["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix"], 32, 32),
        "intel": (["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix"], 8, 32),
        "f16": (["shader-f16", "subgroups"], 32, 32),
        "cpu": ([], 4, 4),
    }
    script = ("import { chooseFlavor } from './src/gpu.js';\n"
              f"const req = {json.dumps(requirements)};\n"
              f"const adapters = {json.dumps(adapters)};\n"
              "const out = {};\n"
              "for (const [name, [features, lo, hi]] of Object.entries(adapters)) out[name] = "
              "chooseFlavor(req, new Set(features), { subgroupMinSize: lo, subgroupMaxSize: hi });\n"
              "console.log(JSON.stringify(out));\n")
    proc = subprocess.run(["node", "--input-type=module", "-e", script], cwd=WEB,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"h200": "float16+subgroup-matrix", "intel": "float16",
                                       "f16": "float16", "cpu": "float32"}


def test_without_webgpu_the_page_says_so(origin):
    report = _node("page_no_webgpu.mjs", origin, timeout=120)
    no_adapter, no_gpu = report["noAdapter"], report["noNavigatorGpu"]
    assert no_adapter["hasNavigatorGpu"] and no_adapter["gpuErrorVisible"]
    assert "no GPU adapter" in no_adapter["gpuError"] and no_adapter["generateDisabled"]
    assert not no_gpu["hasNavigatorGpu"] and no_gpu["gpuErrorVisible"]
    assert "navigator.gpu is missing" in no_gpu["gpuError"] and no_gpu["generateDisabled"]
    for r in (no_adapter, no_gpu):
        assert r["generate"] == r["gpuError"] and r["pageErrors"] == []

