"""Test helpers: throw-away checkouts of this repo, and `doit` run in them as a user would.

Every test that builds works in its own copy under pytest's tmp dir, so tests can edit passes,
configs and the cache without touching the repo or each other. One cold build of the tiny model
per target is shared by the session; tests that change things start from a copy of it. Those
cold builds are kept under build/test-builds/, keyed by the sources and the installed packages,
so the next pytest process on the same tree (CI runs the README's tests, then the long ones)
starts from them instead of building again: `rm -rf build/test-builds` forces them cold.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the suite's builds run beside each other (pytest-xdist): TVM's kernels on one thread each, as
# its own default had it on 2 cores before dodo.py asked for every core (speed is bench/'s)
os.environ.setdefault("TVM_NUM_THREADS", "1")
SUMMARY = re.compile(r"^stages: (\d+) built, (\d+) restored, (\d+) up-to-date$", re.M)
COMPONENTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")
STAGES_PER_COMPONENT = ("weights", "capture", "import", "passes", "schedule", "plan", "compile",
                        "emit", "verify")
ALL_TASKS = {"tokenizer", "noise_scheduler", "sampler_tables", "package"} | {
    f"{s}:{c}" for s in STAGES_PER_COMPONENT for c in COMPONENTS}
# webgpu adds the toolchain, the page bundle, and a float16 variant of every component from
# `passes` on, and its subgroup-matrix variant (configs/targets/webgpu.toml features)
FP16_TASKS = {f"{s}:{c}{v}" for s in STAGES_PER_COMPONENT[3:] for c in COMPONENTS
              for v in ("-fp16", "-fp16-sm")}
WEBGPU_TASKS = ALL_TASKS | {"toolchain", "bundle"} | FP16_TASKS


def llvm_target():
    """The suite's llvm target as its builds have it (with this machine's mcpu: host_cpu.py),
    for tests that compile kernels themselves."""
    import tvm

    from stages.engine import config

    return tvm.target.Target(config.load(**SUITE_VARS).target["target"]["tvm"])


def source_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


def checkout(dst: Path) -> Path:
    """A fresh clone of the working tree: sources only, no build/, dist/ or cache/.

    web/node_modules (what `npm ci` installed from the committed lock file) is linked in, as a
    user's clone would have run `npm ci` too.
    """
    for rel in source_files():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst / rel)
    if (ROOT / "web" / "node_modules").is_dir():
        (dst / "web" / "node_modules").symlink_to(ROOT / "web" / "node_modules")
    return dst


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def keep_unit_scales(ws: Path) -> None:
    """A real edit of the UNet-only pass: it stops rewriting, so the UNet module changes."""
    edit(ws / "stages/passes/drop_unit_scale.py",
         "(scaled, drop))", ")")


# The suite's model and target: the tiny random-weight model, native. It has every op the real
# model has and builds in minutes on 2 cores. A bare `doit build` builds the product's defaults
# (config.DEFAULT_MODEL for config.DEFAULT_TARGET), which tests/test_first_run.py runs as is.
SUITE_VARS = {"model": "tiny", "target": "llvm"}


def doit_argv(*args: str, suite_vars: bool = True) -> list[str]:
    """`python -m doit ARGS`, with the suite's model and target where ARGS name none (a `path=`
    names the model)."""
    named = {a.split("=", 1)[0] for a in args if a and a[0] != "-" and "=" in a}
    if "path" in named:
        named.add("model")
    extra = [f"{k}={v}" for k, v in SUITE_VARS.items() if k not in named] if suite_vars else []
    return [sys.executable, "-m", "doit", *args, *extra]


def doit(cwd: Path, *args: str, check: bool = True, python_flags: tuple = (),
         env: dict | None = None, suite_vars: bool = True):
    argv = doit_argv(*args, suite_vars=suite_vars)
    proc = subprocess.run([argv[0], *python_flags, *argv[1:]], cwd=cwd,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def generate_report(cwd: Path, *args: str) -> dict:
    """`doit generate ARGS`'s report: the JSON object it prints after its task line."""
    proc = doit(cwd, "generate", *args)
    return json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])


def summary(proc) -> tuple[int, int, int]:
    found = SUMMARY.findall(proc.stdout)
    assert len(found) == 1, f"expected one summary line, got {found}:\n{proc.stdout[-2000:]}"
    return tuple(int(n) for n in found[0])


def report(ws: Path, model: str = "tiny", target: str = "llvm") -> dict[str, set[str]]:
    data = json.loads((ws / "dist" / model / target / "build-report.json").read_text())
    return {k: set(v) for k, v in data["tasks"].items()}


def tree_digests(ws: Path, *dirs: str) -> dict[str, str]:
    """sha256 of every file under the given dirs, by relative path (doit's db left out)."""
    import hashlib

    out = {}
    for d in dirs:
        for p in sorted((ws / d).rglob("*")):
            if p.is_file() and not p.name.startswith(".doit") and ".tmp" not in p.parts \
                    and p.name != "build-report.json":
                out[str(p.relative_to(ws))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


STORED_BUILDS = ROOT / "build" / "test-builds"


# what a build reads of the checkout (not the tests, the page's included, docs, benchmarks or
# README)
BUILD_SOURCES = ("dodo.py", "pyproject.toml", "configs/", "stages/", "web/")
NOT_BUILD_SOURCES = ("web/test/",)


def _tree_key() -> str:
    """What a cold build of this checkout depends on: the files it reads, the Python and its
    installed packages (TVM, torch, diffusers...)."""
    import hashlib
    import sysconfig
    from importlib import metadata

    h = hashlib.sha256(sys.version.encode())
    installed = metadata.distributions(path=[sysconfig.get_paths()["purelib"]])
    for dist in sorted(f"{d.metadata['Name']}=={d.version}" for d in installed):
        h.update(dist.encode() + b"\n")
    for rel in sorted(source_files()):
        if rel.startswith(BUILD_SOURCES) and not rel.startswith(NOT_BUILD_SOURCES):
            h.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes())
    return h.hexdigest()[:16]


def stored_cold_build(name: str, *args: str) -> tuple[Path, subprocess.CompletedProcess]:
    """A fresh checkout with a cold `doit build ARGS` in it: (path, doit result).

    Kept in build/test-builds/NAME-KEY (with its doit result) once it passed; a later pytest
    process on the same key reuses it as it is, and a new key replaces the older ones. Tests
    read it in place and copy it before they change anything.
    """
    import fcntl

    key = _tree_key()
    home = STORED_BUILDS / f"{name}-{key}"
    STORED_BUILDS.mkdir(parents=True, exist_ok=True)
    # one build for all: pytest's workers (pytest-xdist) wait for the one that builds
    with open(STORED_BUILDS / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / "result.json").is_file():
            kept = json.loads((home / "result.json").read_text())
            return home / "ws", subprocess.CompletedProcess(kept["args"], 0, kept["stdout"],
                                                            kept["stderr"])
        for old in [*STORED_BUILDS.glob(f"{name}-*"), *STORED_BUILDS.glob(f".{name}-*")]:
            shutil.rmtree(old)
        scratch = STORED_BUILDS / f".{name}-{key}"
        try:
            proc = doit(checkout(scratch / "ws"), "build", *args)
            (scratch / "result.json").write_text(json.dumps(
                {"args": proc.args, "stdout": proc.stdout, "stderr": proc.stderr}))
            scratch.rename(home)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return home / "ws", proc


@pytest.fixture(scope="session")
def built():
    """A checkout with a cold `doit build` of the tiny model for llvm: (path, doit result)."""
    return stored_cold_build("llvm")


@pytest.fixture(scope="session")
def built_webgpu():
    """A checkout with a cold `doit build target=webgpu` of the tiny model: (path, result).

    Shared by the webgpu target's tests and the page's; tests that change files copy it first.
    """
    return stored_cold_build("webgpu", "target=webgpu")


@pytest.fixture(scope="session")
def built_default(tmp_path_factory):
    """A fresh checkout's bare `doit build` (no model=, no target=: the README's), given this
    checkout's cache/ as CI restores one: (path, doit result).

    The cache is hard-linked (nothing copied; the store only ever adds files, by atomic
    renames), so where the README's first command ran here (CI runs it just before the
    tests) every stage is restored; elsewhere it builds cold, to the same bytes.
    """
    ws = checkout(tmp_path_factory.mktemp("default"))
    if (ROOT / "cache").is_dir():
        shutil.copytree(ROOT / "cache", ws / "cache", copy_function=os.link,
                        ignore=shutil.ignore_patterns("*.lock"))
    return ws, doit(ws, "build", suite_vars=False)


def built_model(built, tmp_path_factory, model: str) -> Path:
    """A copy of the session's built checkout with `doit build model=MODEL` run in it: what
    that model shares with tiny is restored from the copied cache."""
    ws = tmp_path_factory.mktemp(model) / "ws"
    shutil.copytree(built[0], ws, symlinks=True)
    doit(ws, "build", f"model={model}")
    return ws


@pytest.fixture
def workspace(built, tmp_path):
    """A private copy of the built checkout (sources, build/, dist/, cache/, doit db)."""
    ws = tmp_path / "ws"
    shutil.copytree(built[0], ws, symlinks=True)
    return ws


_FILE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    _FILE_SECONDS[path] = _FILE_SECONDS.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """Seconds per test file (setup, call and teardown; a session fixture's build counts
    against the first file that asks for it), slowest first: where the suite's time goes."""
    if not _FILE_SECONDS:
        return
    terminalreporter.section("seconds per test file")
    for path, seconds in sorted(_FILE_SECONDS.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f}  {path}")
    terminalreporter.write_line(f"{sum(_FILE_SECONDS.values()):8.1f}  total")
