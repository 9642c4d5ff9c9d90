"""Bad input stops the build with one line naming the file, the key and the fix."""

import contextlib
from pathlib import Path

import pytest

from conftest import checkout, doit, edit


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return checkout(tmp_path_factory.mktemp("clean"))


def _files(ws: Path) -> list[Path]:
    """Everything in the checkout but Python's bytecode caches."""
    return sorted(p.relative_to(ws) for p in ws.rglob("*") if "__pycache__" not in p.parts)


def _fails_in_one_line(ws: Path, *args: str) -> str:
    before = _files(ws)
    proc = doit(ws, *args, check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert _files(ws) == before, "something was written"
    return lines[0]


@contextlib.contextmanager
def _edited(ws: Path, rel: str, old: str, new: str):
    toml = ws / rel
    original = toml.read_text()
    edit(toml, old, new)
    try:
        yield
    finally:
        toml.write_text(original)


def test_unknown_key(clean):
    with _edited(clean, "configs/models/tiny.toml", "hidden_size = 32", "hiden_size = 32"):
        line = _fails_in_one_line(clean, "build")
    assert "configs/models/tiny.toml" in line and "text_encoder.hiden_size" in line
    assert "fix:" in line


def test_wrong_type(clean):
    with _edited(clean, "configs/models/tiny.toml", "seed = 0", 'seed = "zero"'):
        line = _fails_in_one_line(clean, "build")
    assert "model.seed" in line and "an integer" in line and "fix:" in line


def test_missing_model_directory(clean):
    line = _fails_in_one_line(clean, "build", "model=sd-v1-5", "path=/nonexistent/sd15")
    assert "/nonexistent/sd15" in line and "model_index.json" in line and "fix:" in line


def test_unknown_model_and_target(clean):
    assert "configs/models/nope.toml" in _fails_in_one_line(clean, "build", "model=nope")
    assert "configs/targets/nope.toml" in _fails_in_one_line(clean, "build", "target=nope")


def test_rpc_tracker_without_port(clean):
    with _edited(clean, "configs/targets/llvm.toml", "runner_timeout_s = 30",
                 'runner_timeout_s = 30\nrpc_tracker = "localhost"\nrpc_key = "k"'):
        line = _fails_in_one_line(clean, "build")
    assert "configs/targets/llvm.toml" in line and "tune.rpc_tracker" in line and "fix:" in line


def test_unknown_precision(clean):
    with _edited(clean, "configs/targets/webgpu.toml", 'precisions = ["float32", "float16"]',
                 'precisions = ["float32", "bfloat16"]'):
        line = _fails_in_one_line(clean, "build", "target=webgpu")
    assert "target.precisions" in line and "'float16'" in line and "fix:" in line


def test_precisions_must_start_with_the_float32_reference(clean):
    with _edited(clean, "configs/targets/webgpu.toml", 'precisions = ["float32", "float16"]',
                 'precisions = ["float16"]'):
        line = _fails_in_one_line(clean, "build", "target=webgpu")
    assert "target.precisions" in line and "float32" in line and "fix:" in line


@pytest.mark.parametrize("sizes, words", [('["100x64"]', "not multiples of 16"),
                                          ('["96 by 64"]', "not WIDTHxHEIGHT")])
def test_image_sizes_off_the_models_grid(clean, sizes, words):
    with _edited(clean, "configs/models/tiny-sizes.toml", 'sizes = ["96x96", "64x96"]',
                 f"sizes = {sizes}"):
        line = _fails_in_one_line(clean, "build", "model=tiny-sizes")
    assert "configs/models/tiny-sizes.toml" in line and words in line and "fix:" in line


def test_the_llvm_target_names_this_machines_instruction_set(tmp_path):
    """Without an mcpu LLVM emits SSE2 only: the config adds the host's x86-64 level, which then
    is in every key (the webgpu target's wasm host is not touched)."""
    from stages.engine import config, host_cpu

    base = {"cx16", "popcnt", "sse4_1", "sse4_2", "ssse3"}
    v3 = base | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
    assert host_cpu.x86_64_level({"sse2"}) is None
    assert host_cpu.x86_64_level(base) == "x86-64-v2"
    assert host_cpu.x86_64_level(v3 | {"avx512f"}) == "x86-64-v3"
    assert host_cpu.x86_64_level(v3 - {"fma"} | {"avx512f", "avx512bw", "avx512cd",
                                                 "avx512dq", "avx512vl"}) == "x86-64-v2"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: " + " ".join(sorted(v3)) + "\n\n")
    assert host_cpu.x86_64_level(host_cpu.cpu_flags(cpuinfo)) == "x86-64-v3"
    assert host_cpu.cpu_flags(tmp_path / "absent") == set()

    assert config.load("tiny", "llvm").target["target"]["tvm"].get("mcpu") == host_cpu.mcpu()
    assert "mcpu" not in config.load("tiny", "webgpu").target["target"]["tvm"]
