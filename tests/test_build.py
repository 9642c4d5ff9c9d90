"""The tiny model through the whole DAG for llvm: cold build, verify, no-op rebuild."""

import json

from conftest import ALL_TASKS, COMPONENTS, doit, report, summary


def test_cold_build_builds_every_stage_and_verifies(built):
    ws, proc = built
    assert summary(proc) == (len(ALL_TASKS), 0, 0)
    assert report(ws)["built"] == ALL_TASKS
    for c in COMPONENTS:
        result = json.loads((ws / "dist/tiny/llvm" / c / "verify.json").read_text())
        assert result["passed"] and result["rel_l2"] <= 1e-5, result
        manifest = json.loads((ws / "dist/tiny/llvm" / c / "manifest.json").read_text())
        files = set(manifest["files"])
        assert {f"{c}.so", "params/tensor-cache.json", "params/params_shard_0.bin"} <= files
        assert files == {str(p.relative_to(ws / "dist/tiny/llvm" / c))
                         for p in (ws / "dist/tiny/llvm" / c).rglob("*")
                         if p.is_file() and p.name not in ("manifest.json", "verify.json")}
        assert manifest["stage"] == f"emit:{c}" and len(manifest["key"]) == 64


def test_package_lists_every_file_of_the_model_with_its_sha256(built):
    import hashlib

    ws, _ = built
    top = ws / "dist/tiny/llvm"
    index = json.loads((top / "manifest.json").read_text())
    on_disk = {str(p.relative_to(top)) for p in top.rglob("*") if p.is_file()}
    assert set(index["files"]) == on_disk - {"manifest.json", "build-report.json"}
    for rel, entry in index["files"].items():
        assert hashlib.sha256((top / rel).read_bytes()).hexdigest() == entry["sha256"], rel
    assert set(index["variants"]) == set(COMPONENTS)
    assert index["variants"]["unet"]["verify"]["rel_l2"] <= 1e-5
    assert {"tokenizer.json", "scheduler_config.json"} <= on_disk


def test_python_loader_refuses_a_changed_shard(built, tmp_path):
    import shutil

    import pytest

    from stages.runtime import params

    ws, _ = built
    unet = tmp_path / "unet"
    shutil.copytree(ws / "dist/tiny/llvm/unet", unet)
    assert len(params.load(unet / "params", unet / "manifest.json")) > 0
    shard = unet / "params/params_shard_0.bin"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(params.CorruptShard, match="params/params_shard_0.bin: bytes do not match"):
        params.load(unet / "params", unet / "manifest.json")


def test_plan_reduces_activation_memory(built):
    ws, _ = built
    for c in COMPONENTS:
        plan = json.loads((ws / "build/tiny/llvm" / c / "plan/plan.json").read_text())
        assert 0 < plan["planned"]["bytes"] < plan["unplanned"]["bytes"], plan


def test_noop_build_runs_nothing_and_imports_neither_torch_nor_tvm(workspace):
    proc = doit(workspace, "build", python_flags=("-X", "importtime"))
    assert summary(proc) == (0, 0, len(ALL_TASKS))
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "doit" in imported  # the import log is really there
    heavy = {m for m in imported if m.split(".")[0] in ("torch", "tvm", "tvm_ffi", "diffusers",
                                                         "transformers", "numpy")}
    assert not heavy, heavy


def test_single_stage_task_is_addressable(workspace):
    (workspace / "build/tiny/unet/capture/graph.pt2").unlink()
    proc = doit(workspace, "capture:unet")
    assert summary(proc) == (0, 1, 1)  # restored from cache/; its weights dep up to date
    assert (workspace / "build/tiny/unet/capture/graph.pt2").is_file()
