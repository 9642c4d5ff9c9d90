"""The webgpu target: wasm + WGSL per component, run under WebGPU (Dawn on Mesa lavapipe) in
Node by the verify stage and compared with PyTorch."""

import json
import shutil

import pytest

from conftest import ROOT, checkout, doit, edit, report, summary

needs_toolchain = pytest.mark.skipif(
    shutil.which("emcc") is None or not (ROOT / "web/node_modules/webgpu").is_dir(),
    reason="needs emscripten and `npm ci` in web/ (.ci/run installs both)")


@pytest.fixture(scope="module")
def webgpu_build(tmp_path_factory):
    ws = checkout(tmp_path_factory.mktemp("webgpu"))
    return ws, doit(ws, "build", "target=webgpu")


@needs_toolchain
def test_cold_webgpu_build_verifies_every_component_under_webgpu(webgpu_build):
    ws, proc = webgpu_build
    built, restored, uptodate = summary(proc)
    assert (built, restored, uptodate) == (27, 0, 0)  # the 26 llvm stages + toolchain
    dist = ws / "dist/tiny/webgpu"
    for c in ("text_encoder", "unet", "vae_decoder"):
        wasm = (dist / c / f"{c}.wasm").read_bytes()
        assert wasm[:4] == b"\0asm"
        result = json.loads((dist / c / "verify.json").read_text())
        assert result["passed"] and result["rel_l2"] <= 1e-4, result
        manifest = json.loads((dist / c / "manifest.json").read_text())
        assert f"{c}.wasm" in manifest["files"]
    assert "verify:unet" in report(ws, target="webgpu")["built"]


@needs_toolchain
def test_webgpu_noop_and_webgpu_only_pass_edit(webgpu_build, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(webgpu_build[0], ws, symlinks=True)
    assert summary(doit(ws, "build", "target=webgpu"))[0:2] == (0, 0)
    doit(ws, "build")  # llvm too, so the edit below can show it leaves llvm alone
    edit(ws / "stages/passes/wgsl_literals.py", "FLOAT32_MAX = 3.4028234663852886e38",
         "FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32")
    assert summary(doit(ws, "build"))[0] == 0
    doit(ws, "build", "target=webgpu")
    assert report(ws, target="webgpu")["built"] == {
        "passes:text_encoder", "passes:unet", "passes:vae_decoder"}
