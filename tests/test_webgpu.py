"""The webgpu target: wasm + WGSL per component in float32 and float16, run under WebGPU (Dawn
on Mesa lavapipe) in Node by the verify stage and compared with PyTorch; the model's dist/
directory with its shards, tokenizer and manifest; the loader's shard check; the GPU limits."""

import hashlib
import json
import shutil
import subprocess

import pytest

from conftest import (COMPONENTS, ROOT, WEBGPU_TASKS, checkout, doit, edit, report,
                      summary)

needs_toolchain = pytest.mark.skipif(
    shutil.which("emcc") is None or not (ROOT / "web/node_modules/webgpu").is_dir(),
    reason="needs emscripten and `npm ci` in web/ (.ci/run installs both)")


@pytest.fixture(scope="module")
def webgpu_build(built_webgpu):
    return built_webgpu


@needs_toolchain
def test_cold_webgpu_build_verifies_every_component_under_webgpu(webgpu_build):
    ws, proc = webgpu_build
    assert summary(proc) == (len(WEBGPU_TASKS), 0, 0)
    assert report(ws, target="webgpu")["built"] == WEBGPU_TASKS
    dist = ws / "dist/tiny/webgpu"
    for c in COMPONENTS:
        for variant, precision, limit in ((c, "float32", 1e-4), (f"{c}-fp16", "float16", 1e-2)):
            wasm = (dist / variant / f"{variant}.wasm").read_bytes()
            assert wasm[:4] == b"\0asm"
            result = json.loads((dist / variant / "verify.json").read_text())
            assert result["passed"] and result["rel_l2"] <= limit, result
            assert result["precision"] == precision
            cache = json.loads((dist / variant / "params/tensor-cache.json").read_text())
            dtypes = {r["dtype"] for shard in cache["records"] for r in shard["records"]}
            assert precision in dtypes and dtypes <= {precision, "int32", "int64"}, dtypes
        # the subgroup-matrix variant: built, its kernels swapped in, and not run on an adapter
        # without subgroup matrices (lavapipe), which its report says
        sm = dist / f"{c}-fp16-sm"
        assert (sm / f"{c}-fp16-sm.wasm").read_bytes()[:4] == b"\0asm"
        result = json.loads((sm / "verify.json").read_text())
        assert result["passed"] is None and "chromium-experimental-subgroup-matrix" in \
            result["skipped"], result
        if c != "text_encoder":   # its 77-token matmuls fit no 16x16 tiling
            assert b"subgroupMatrixMultiplyAccumulate" in (sm / f"{c}-fp16-sm.wasm").read_bytes()
    # float16 shards are half the float32 ones
    index = json.loads((dist / "manifest.json").read_text())
    needs = index["requirements"]
    params = {f: sum(v["param_bytes"] for v in index["variants"].values() if v["flavor"] == f)
              for f in needs}
    assert params["float16"] * 2 == pytest.approx(params["float32"], rel=0.01)
    # the download a flavor's first visit fetches: the page, the tokenizer, the tables, and its
    # variants' libraries and parameter files
    for flavor, need in needs.items():
        fetched = {"index.html", "app.js", "model_worker.js", "tokenizer.json",
                   "tokenizer_config.json", "schedules.json"}
        for name, v in index["variants"].items():
            if v["flavor"] == flavor and v["params"].startswith(f"{name}/"):  # default size
                fetched |= {v["library"]} | {rel for rel in index["files"]
                                             if rel.startswith(f"{name}/params/")}
        assert need["download_bytes"] == sum(index["files"][rel]["size"] for rel in fetched)
    assert needs["float16"]["features"] == ["shader-f16"]
    assert needs["float16+subgroup-matrix"]["features"] == [
        "shader-f16", "subgroups", "chromium-experimental-subgroup-matrix"]
    assert needs["float16+subgroup-matrix"]["subgroupSize"] == 32
    # the GPU memory the page announces: all params + the largest component's activations
    for flavor, need in needs.items():
        mine = [v for v in index["variants"].values() if v["flavor"] == flavor]
        assert need["gpu_bytes"] == sum(v["param_bytes"] for v in mine) + max(
            v["activation_bytes"] for v in mine)
    # every file under dist/tiny/webgpu is in the manifest, with its sha256
    on_disk = {str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file()}
    assert set(index["files"]) == on_disk - {"manifest.json", "build-report.json"}
    for rel, entry in index["files"].items():
        assert hashlib.sha256((dist / rel).read_bytes()).hexdigest() == entry["sha256"], rel
    assert {"tokenizer.json", "tokenizer_config.json", "scheduler_config.json", "schedules.json",
            "index.html", "app.js", "model_worker.js"} <= on_disk


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
    # a comment: every webgpu variant re-runs its passes, which write the same module (cutoff)
    assert report(ws, target="webgpu")["built"] == {
        f"passes:{c}{suffix}" for c in COMPONENTS for suffix in ("", "-fp16", "-fp16-sm")}


def run_harness(component_dir, tmp_path):
    """Run the verify harness on a component dir (copied); return the completed process."""
    import numpy as np

    name = component_dir.name
    job = {"wasm": str(component_dir / f"{name}.wasm"), "params": str(component_dir / "params"),
           "manifests": [str(component_dir / "manifest.json")],
           "output": str(tmp_path / "out.bin"), "inputs": []}
    specs = {"latents": ((1, 4, 8, 8), "float32")}
    for n, (shape, dtype) in specs.items():
        np.zeros(shape, dtype).tofile(tmp_path / n)
        job["inputs"].append({"path": str(tmp_path / n), "shape": list(shape), "dtype": dtype})
    (tmp_path / "job.json").write_text(json.dumps(job))
    return subprocess.run(["node", str(ROOT / "web/verify/run_component.mjs"),
                           str(tmp_path / "job.json")], capture_output=True, text=True,
                          timeout=600)


@needs_toolchain
def test_loader_refuses_a_shard_whose_bytes_changed(webgpu_build, tmp_path):
    vae = tmp_path / "vae_decoder-fp16"
    shutil.copytree(webgpu_build[0] / "dist/tiny/webgpu/vae_decoder-fp16", vae)
    ok = run_harness(vae, tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    shard = vae / "params/params_shard_0.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x40   # one bit of one weight: same size, different bytes
    shard.write_bytes(bytes(data))
    bad = run_harness(vae, tmp_path)
    assert bad.returncode != 0
    assert "shard vae_decoder-fp16/params/params_shard_0.bin: sha256" in bad.stderr, \
        bad.stderr[-2000:]
    assert "manifest.json" in bad.stderr


def _small_target(ws, name, **limits):
    """A copy of the webgpu target config with tighter limits, as configs/targets/<name>.toml."""
    text = (ws / "configs/targets/webgpu.toml").read_text()
    for key, (old, new) in limits.items():
        assert f"{key} = {old}" in text, key
        text = text.replace(f"{key} = {old}", f"{key} = {new}")
    (ws / f"configs/targets/{name}.toml").write_text(text)


def test_kernel_over_the_workgroup_memory_limit_is_a_build_error(tmp_path):
    ws = checkout(tmp_path / "ws")
    _small_target(ws, "webgpu-small", max_shared_memory_per_block=(16384, 1024))
    proc = doit(ws, "schedule:unet", "target=webgpu-small", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    line = next(x for x in out.splitlines() if "workgroup memory" in x)
    assert "error: kernel " in line and "max_shared_memory_per_block = 1024" in line, line
    assert "fix:" in line and "Traceback" not in out


def test_buffer_over_the_binding_limit_is_a_build_error(tmp_path):
    ws = checkout(tmp_path / "ws")
    _small_target(ws, "webgpu-small",
                  max_storage_buffer_binding_size=(1073741824, 1048576))
    proc = doit(ws, "plan:text_encoder", "target=webgpu-small", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    line = next(x for x in out.splitlines() if "max_storage_buffer_binding_size" in x)
    # the token embedding, 49408 x 32 float32 = 6.3 MB, is the largest buffer: the line names
    # it and the kernel that binds it (the gather of the token ids)
    assert "error: plan:text_encoder: kernel take" in line, line
    assert "param p_m_embeddings_token_embedding_weight of 6324224 bytes" in line, line
    assert "= 1048576" in line and "fix:" in line, line
    assert "Traceback" not in out
