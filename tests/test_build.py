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
        assert set(manifest["files"]) == {f"{c}.so", "params.safetensors"}
        assert manifest["stage"] == f"emit:{c}" and len(manifest["key"]) == 64


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
