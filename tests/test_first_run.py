"""The first run (issue 17): the README's `doit build`, bare, builds the page for the default
model (the trained `shapes`, webgpu target, every component verified, the page bundled), and in
Chromium the page draws what it is asked, with every sampler that draws it at 20 steps.

The build runs in a fresh checkout of the sources, given this checkout's cache/ as CI restores
one (conftest.built_default): where the README's first command ran here (CI runs it just before
the tests) every stage is restored; elsewhere it builds cold, to the same bytes.

The pictures are measured as tests/test_shapes.py measures the native ones (shapes.measure):
the object's and the background's dominant colors and the object's centroid. The page's
screenshot after "a red circle on a blue background" is the README's (docs/images/page.png is
a copy of build/test-artifacts/first-run/page.png).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import ROOT, summary
from stages.engine import config
from test_page import ROUTE, _node, pytestmark, serving  # noqa: F401 (pytestmark: skips)
from test_shapes import PROMPTS, SAMPLERS, check

ARTIFACTS = ROOT / "build" / "test-artifacts" / "first-run"
MODEL, TARGET = config.DEFAULT_MODEL, config.DEFAULT_TARGET
COLOR_PROMPTS = {f"a {c} circle on a white background": c for c in ("red", "blue", "yellow")}


def test_bare_build_is_the_default_models_page(built_default):
    ws, result = built_default
    built, restored, _ = summary(result)
    print(f"\nthe bare doit build: {built} built, {restored} restored")
    dist = ws / "dist" / MODEL / TARGET
    manifest = json.loads((dist / "manifest.json").read_text())
    assert manifest["model"] == MODEL and manifest["target"] == TARGET
    assert (dist / "index.html").is_file() and (dist / "app.js").is_file()
    # every variant verified against PyTorch, or (the -sm ones on lavapipe) skipped with why
    assert {v.split("-")[0] for v in manifest["variants"]} >= {"text_encoder", "unet",
                                                               "vae_decoder", "vae_encoder"}
    for name in manifest["variants"]:
        verify = json.loads((dist / name / "verify.json").read_text())
        assert verify["passed"] or verify.get("skipped"), (name, verify)
    assert manifest["image_size"] == 64


@pytest.fixture(scope="module")
def origin(built_default):
    yield from serving(built_default[0] / "dist" / MODEL / TARGET)


def _opts(prompt, scheduler, seed, steps=20):
    return {"prompt": prompt, "negativePrompt": "", "seed": seed, "steps": steps,
            "guidance": 5.0, "scheduler": scheduler}


# Per sampler one of the first two prompts of tests/test_shapes.py in turn (colors, background,
# a place; its seeds), PNDM at 50 steps, and the color word changed alone; the screenshot after
# the first. (test_shapes.py asks every sampler all four natively.)
FIRST_TWO = list(PROMPTS.items())[:2]
IMAGES = [{"name": f"{s} {i % 2}", "opts": _opts(FIRST_TWO[i % 2][0], s, i % 2),
           "want": FIRST_TWO[i % 2][1]} for i, s in enumerate(SAMPLERS)] + [
    {"name": "pndm 50", "opts": _opts("a red circle on a blue background", "pndm", 0, 50),
     "want": PROMPTS["a red circle on a blue background"]}] + [
    {"name": f"color {c}", "opts": _opts(p, "dpm++2m", 11), "want": {"color": c}}
    for p, c in COLOR_PROMPTS.items()]


@pytest.fixture(scope="module")
def session(origin, tmp_path_factory) -> dict:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    job = {"route": ROUTE, "artifacts": str(ARTIFACTS), "screenshotAfter": IMAGES[0]["name"],
           "images": [{"name": im["name"], "opts": im["opts"]} for im in IMAGES]}
    job_path = tmp_path_factory.mktemp("job") / "job.json"
    job_path.write_text(json.dumps(job))
    report = _node("page_session.mjs", origin, str(job_path), timeout=1500)
    print(f"\nfirst-run artifacts (page.png, image.png): {ARTIFACTS}")
    assert "error" not in report, f"the session stopped: {report['error']}\n" \
                                  f"console: {report['console'][-20:]}"
    assert report["pageErrors"] == [], report["pageErrors"]
    return report


@pytest.mark.long      # 9 images of 20 steps (one of 50) under lavapipe
def test_the_page_draws_what_the_prompt_asks(session):
    failures, lines = [], []
    for spec, im in zip(IMAGES, session["images"]):
        assert im["ok"], (spec["name"], im.get("error"), im["page"])
        assert (im["width"], im["height"]) == (64, 64)
        rgba = np.asarray(im["pixels"], np.uint8).reshape(64, 64, 4)
        wrong = check(rgba[..., :3], spec["want"])
        lines.append(f"{spec['name']:>18} {spec['opts']['prompt']!r}: "
                     f"{', '.join(wrong) or 'as asked'} ({im['secondsPerStep']:.2f} s/step)")
        if wrong:
            failures.append(f"{spec['name']} {spec['opts']['prompt']!r}: {', '.join(wrong)}")
    print("\nthe page (" + ROUTE + "), the default model:\n" + "\n".join(lines))
    assert not failures, "; ".join(failures)
    assert (ARTIFACTS / "page.png").is_file()
