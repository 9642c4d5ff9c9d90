"""The cuda target (for measurement on a GPU machine) builds here, without a GPU or nvcc, and its
verify says in one line where it has to run instead of failing somewhere inside TVM."""

import shutil

import pytest

from conftest import doit

pytestmark = pytest.mark.skipif(shutil.which("nvidia-smi") is not None,
                                reason="this machine has an NVIDIA GPU: verify would run there")


@pytest.mark.long
def test_cuda_builds_to_emit_and_verify_names_the_gpu_machine(workspace):
    doit(workspace, "emit:unet", "emit:unet-fp16", "target=cuda")
    for variant in ("unet", "unet-fp16"):
        out = workspace / "dist" / "tiny" / "cuda" / variant
        assert (out / f"{variant}.so").stat().st_size > 0
        assert (out / "params" / "tensor-cache.json").is_file()

    proc = doit(workspace, "verify:unet", "target=cuda", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    line = next(x for x in out.splitlines() if "NVIDIA GPU" in x)
    assert line.startswith("error: verify:unet: target cuda") and "fix:" in line, line
    assert "doit emit target=cuda" in line and "Traceback" not in out
