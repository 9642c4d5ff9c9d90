"""cache/ as a content-addressed store: fresh clones, corruption, kills, concurrent builds."""

import pytest
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import (ALL_TASKS, checkout, doit, doit_argv, keep_unit_scales, report, summary,
                      tree_digests)


def _clone_with_cache(built_ws: Path, dst: Path) -> Path:
    ws = checkout(dst)
    shutil.copytree(built_ws / "cache", ws / "cache")
    return ws


def test_fresh_clone_with_cache_builds_nothing_and_is_byte_identical(built, tmp_path):
    ws = _clone_with_cache(built[0], tmp_path / "clone")
    proc = doit(ws, "build")
    assert summary(proc) == (0, len(ALL_TASKS), 0)
    assert tree_digests(ws, "build", "dist") == tree_digests(built[0], "build", "dist")


def _blob_of(ws: Path, rel: str) -> Path:
    import hashlib

    digest = hashlib.sha256((ws / rel).read_bytes()).hexdigest()
    return ws / "cache" / "cas" / digest[:2] / digest


def test_corrupt_blob_is_detected_and_its_stage_rebuilt(built, tmp_path):
    ws = _clone_with_cache(built[0], tmp_path / "clone")
    blob = _blob_of(built[0], "dist/tiny/llvm/unet/unet.so").relative_to(built[0])
    data = bytearray((ws / blob).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (ws / blob).write_bytes(bytes(data))

    proc = doit(ws, "build")
    assert "bytes do not match their sha256" in proc.stderr
    # the library's blob is compile's output and emit's copy: compile rebuilds it, emit restores
    assert report(ws)["built"] == {"compile:unet"}
    assert summary(proc) == (1, len(ALL_TASKS) - 1, 0)
    assert tree_digests(ws, "dist") == tree_digests(built[0], "dist")


@pytest.mark.long
def test_killed_build_leaves_no_partial_output_and_next_build_is_right(workspace):
    # a real pass edit, so the unet stages from passes on must run; kill during compile:unet
    keep_unit_scales(workspace)
    before = tree_digests(workspace, "dist")
    proc = subprocess.Popen(doit_argv("build"), cwd=workspace,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    for line in proc.stdout:
        if "compile:unet: relax.build" in line:
            time.sleep(1.0)
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    # no half-written file in place: dist/ is exactly what it was
    assert tree_digests(workspace, "dist") == before
    leftovers = [p for p in (workspace / "build").rglob("*.tmp") if p.is_file()]
    assert not leftovers, leftovers

    result = doit(workspace, "build")
    assert "verify:unet" in report(workspace)["built"]
    assert summary(result)[0] >= 2  # compile:unet and verify:unet at least
    assert not any((workspace / "build" / ".tmp").iterdir())


@pytest.mark.long
def test_two_builds_at_once_on_one_cache_both_succeed(built, tmp_path):
    ws = _clone_with_cache(built[0], tmp_path / "clone")
    keep_unit_scales(ws)
    procs = [subprocess.Popen(doit_argv("build"), cwd=ws, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(2)]
    outputs = [p.communicate()[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    # the second builder waited on the key lock and restored what the first one built
    totals = [tuple(map(int, line.split()[1::2][:3]))
              for out in outputs for line in out.splitlines() if line.startswith("stages:")]
    assert len(totals) == 2
    built_total = sum(t[0] for t in totals)
    assert built_total >= 5  # the unet stages from passes on, built at least once
    final = doit(ws, "build")
    assert summary(final) == (0, 0, len(ALL_TASKS))
    assert '"passed": true' in (ws / "dist/tiny/llvm/unet/verify.json").read_text()
