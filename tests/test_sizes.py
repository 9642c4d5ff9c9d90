"""Image sizes (issue 16): configs/models/tiny-sizes.toml, the tiny model at its default 64x64
plus 96x96 and 64x96 (`model.sizes`, width x height).

Each extra size is a variant of the UNet and of both VAE halves (`unet-96x96`, `unet-64x96-fp16`),
compiled for its shapes; the weights, the text encoder and the parameter shards are the default
size's. What must hold: adding sizes to a built model builds only those variants' stages
(asserted by stage name); they write no params and name the default variant's; verify passes
at every size; `doit generate --width W --height H` makes each size's image and matches
diffusers (>= 35 dB); a size the build lacks is refused in one line; and the page offers the
sizes and draws each, matching the Python runner (long: a webgpu build of every size).
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from conftest import STAGES_PER_COMPONENT, built_model, doit, edit, generate_report, report
from stages.engine import config, dag

EXTRA = ("96x96", "64x96")
SIZED = ("unet", "vae_decoder", "vae_encoder")


@pytest.fixture(scope="module")
def sizes_ws(built, tmp_path_factory):
    return built_model(built, tmp_path_factory, "tiny-sizes")


def test_variants_share_weights_capture_per_size_and_params_with_the_default():
    cfg = config.load("tiny-sizes", "webgpu")
    assert cfg.sizes == ((64, 64), (96, 96), (64, 96))
    assert "unet-64x96-fp16-sm" in cfg.variants and "text_encoder-96x96" not in cfg.variants
    assert config.split_variant("unet-64x96-fp16-sm") == ("unet", "float16")
    assert config.variant_size("unet-64x96-fp16-sm") == (64, 96)
    assert cfg.input_specs("unet-64x96-fp16")["sample"][0] == (2, 4, 12, 8)   # (h, w) / 8
    assert cfg.input_specs("vae_encoder-64x96")["image"][0] == (1, 3, 96, 64)
    assert dag.spec(cfg, "weights", "unet-64x96-fp16").component == "unet"
    assert dag.spec(cfg, "capture", "unet-64x96-fp16").component == "unet-64x96"
    assert "params" not in dag.spec(cfg, "import", "unet-64x96").outputs
    emit = dag.spec(cfg, "emit", "unet-64x96-fp16")
    assert "params" not in emit.outputs and emit.config["params_of"] == "unet-fp16"
    # the default size's entries keep their keys: a model without sizes rebuilds nothing
    tiny = config.load("tiny", "webgpu")
    for stage in STAGES_PER_COMPONENT:
        assert dag.spec(cfg, stage, "unet-fp16").config == dag.spec(tiny, stage, "unet-fp16").config


@pytest.mark.long      # builds two more sizes (the README's run stays within 20 min)
def test_adding_sizes_builds_only_their_unet_and_vae(sizes_ws):
    ran = report(sizes_ws, "tiny-sizes")
    extra = {f"{s}:{c}-{size}" for s in STAGES_PER_COMPONENT[1:] for c in SIZED for size in EXTRA}
    assert ran["built"] == extra | {"package"}, ran["built"] ^ (extra | {"package"})
    index = json.loads((sizes_ws / "dist/tiny-sizes/llvm/manifest.json").read_text())
    assert index["sizes"] == [[64, 64], [96, 96], [64, 96]]
    for size in EXTRA:
        for c in SIZED:
            v = index["variants"][f"{c}-{size}"]
            assert v["params"] == f"{c}/params/tensor-cache.json"
            assert v["size"] == [int(n) for n in size.split("x")]
            assert v["verify"]["rel_l2"] <= v["verify"]["max_rel_l2"]
            assert not (sizes_ws / f"dist/tiny-sizes/llvm/{c}-{size}/params").exists()


@pytest.mark.long      # builds two more sizes (the README's run stays within 20 min)
@pytest.mark.parametrize("width, height", [(64, 64), (96, 96), (64, 96)])
def test_generate_makes_each_size_and_matches_diffusers(sizes_ws, tmp_path, width, height):
    out = generate_report(sizes_ws, "model=tiny-sizes", "--prompt", "a red circle", "--steps", "6",
                          "--width", str(width), "--height", str(height), "--compare",
                          "--output", str(tmp_path / "image.png"))
    assert out["image_size"] == [height, width, 3]
    print(f"\n{width}x{height}: PSNR vs diffusers {out['psnr_db']:.1f} dB")
    assert out["psnr_db"] >= 35


@pytest.mark.long      # builds two more sizes (the README's run stays within 20 min)
def test_a_size_the_build_lacks_is_refused_in_one_line(sizes_ws):
    proc = doit(sizes_ws, "generate", "model=tiny-sizes", "--width", "80", check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "64x64, 96x96, 64x96, not 80x64" in lines[0] and "fix:" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.long      # a webgpu build of two more sizes, and a Chromium visit
def test_the_page_offers_the_sizes_and_draws_each_as_the_python_runner(sizes_ws, built_webgpu,
                                                                       tmp_path):
    import functools
    import threading

    from stages.runtime import generate, serve
    from test_page import CHROMIUM, ROUTE, WEB, _node, _rgb

    if not (WEB / "node_modules" / "playwright-core").is_dir() or not CHROMIUM.exists() \
            or shutil.which("emcc") is None:
        pytest.skip("needs web/node_modules, /usr/bin/chromium and emscripten (.ci/run installs them)")
    ws = tmp_path / "ws"
    shutil.copytree(built_webgpu[0], ws, symlinks=True)
    # float32 alone (what Chromium on lavapipe runs), so that only the two sizes' three float32
    # components build; the float32 variants' keys do not depend on the target's precisions
    edit(ws / "configs/targets/webgpu.toml", 'precisions = ["float32", "float16"]',
         'precisions = ["float32"]')
    edit(ws / "configs/targets/webgpu.toml", 'features = ["subgroup-matrix"]', "features = []")
    doit(ws, "build", "model=tiny-sizes", "target=webgpu")
    ran = report(ws, "tiny-sizes", "webgpu")
    assert not {t for t in ran["built"] if t.split(":")[0] in ("weights", "toolchain", "bundle")}
    assert all(re.search(r"-\d+x\d+", t) for t in ran["built"] - {"package"}), ran["built"]
    root = ws / "dist/tiny-sizes/webgpu"

    class Quiet(serve.Handler):
        def log_message(self, *args):
            pass

    httpd = serve.server(root, 0)
    httpd.RequestHandlerClass = functools.partial(Quiet, directory=str(root))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    opts = {"prompt": "a red circle", "negativePrompt": "", "seed": 5, "steps": 3,
            "guidance": 7.5, "scheduler": "dpm++2m"}
    sizes = ["64x96", "96x96", "64x64"]
    job = {"route": ROUTE, "artifacts": str(tmp_path),
           "images": [{"name": s, "opts": {**opts, "size": s}} for s in sizes]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    try:
        visit = _node("page_session.mjs", f"http://127.0.0.1:{httpd.server_address[1]}",
                      str(tmp_path / "job.json"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert visit["pageErrors"] == [] and "error" not in visit, visit.get("error")
    assert visit["start"]["page"]["sizes"] == ["64x64", "96x96", "64x96"]
    for image in visit["images"]:
        assert image["ok"], (image["name"], image.get("error"))
        width, height = (int(n) for n in image["name"].split("x"))
        assert (image["width"], image["height"]) == (width, height)
        theirs = generate.pixels(sizes_ws / "dist/tiny-sizes/llvm", opts["prompt"], seed=5,
                                 steps=3, guidance=7.5, scheduler="dpm++2m", width=width,
                                 height=height)
        db = generate.psnr(_rgb(image), theirs, 255.0)
        print(f"\npage {image['name']} ({image['precision']}) vs llvm: {db:.1f} dB")
        assert db >= 35
