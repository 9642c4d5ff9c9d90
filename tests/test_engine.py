"""The build engine alone, in seconds: a fake two-stage DAG through stages/runner.execute_spec
with a real store (cache/ layout) in a temp dir. What the real-build tests check through doit
and TVM (restores, early cutoff, killed and concurrent builds, corrupt blobs), here without
them.

    source.txt --upper--> upper.txt --split--> lines/ (a tree) + count.txt
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.engine.rule import Spec
from stages.engine.runner import execute_spec
from stages.engine.store import Store

ROOT = Path(__file__).resolve().parents[1]


def upper(inputs, outputs, config):
    text = inputs["source"].read_text()
    outputs["upper"].write_text(text.upper() * config["repeat"])
    _count_run(inputs["source"].parent, "upper")
    pause = inputs["source"].parent / "pause"
    if pause.exists():                  # the killed-build test kills us here
        time.sleep(float(pause.read_text()))


def split(inputs, outputs, config):
    lines = inputs["upper"].read_text().splitlines()
    for i, line in enumerate(lines):
        (outputs["lines"] / f"{i}.txt").write_text(line)
    outputs["count"].write_text(str(len(lines)))
    _count_run(inputs["upper"].parent.parent, "split")


def _count_run(where: Path, stage: str) -> None:
    with open(where / f"runs-{stage}", "a") as f:
        f.write("x")


def runs(ws: Path, stage: str) -> int:
    path = ws / f"runs-{stage}"
    return len(path.read_text()) if path.exists() else 0


def specs(ws: Path, repeat: int = 1) -> dict[str, tuple[Spec, object]]:
    return {
        "upper": (Spec("upper", "model", {"source": ws / "source.txt"},
                       {"upper": ws / "out" / "upper.txt"}, {"repeat": repeat}), upper),
        "split": (Spec("split", "model", {"upper": ws / "out" / "upper.txt"},
                       {"lines": ws / "out" / "lines", "count": ws / "out" / "count.txt"}, {},
                       trees=frozenset({"lines"})), split),
    }


def build(ws: Path, stage: str, repeat: int = 1) -> str:
    s, action = specs(ws, repeat)[stage]
    return execute_spec(s, f"fake-{stage}-{json.dumps(s.config)}", action, Store(ws / "cache"),
                        work=ws / "tmp")


def build_all(ws: Path, repeat: int = 1) -> list[str]:
    return [build(ws, stage, repeat) for stage in ("upper", "split")]


@pytest.fixture
def ws(tmp_path):
    (tmp_path / "source.txt").write_text("a\nb\n")
    return tmp_path


def test_built_then_restored_with_the_same_bytes(ws):
    assert build_all(ws) == ["built", "built"]
    first = {p: p.read_bytes() for p in (ws / "out").rglob("*") if p.is_file()}
    (ws / "out" / "upper.txt").unlink()
    (ws / "out" / "lines" / "0.txt").unlink()
    assert build_all(ws) == ["restored", "restored"]
    assert {p: p.read_bytes() for p in (ws / "out").rglob("*") if p.is_file()} == first
    assert (runs(ws, "upper"), runs(ws, "split")) == (1, 1)
    assert not list((ws / "tmp").iterdir())


def test_a_changed_input_rebuilds_and_an_unchanged_output_stops_the_rebuild(ws):
    build_all(ws)
    (ws / "source.txt").write_text("A\nB\n")          # upper() writes the same bytes
    assert build_all(ws) == ["built", "restored"]
    (ws / "source.txt").write_text("a\nb\nc\n")
    assert build_all(ws) == ["built", "built"]
    assert (ws / "out" / "count.txt").read_text() == "3"


def test_a_changed_config_slice_is_another_key(ws):
    build_all(ws)
    assert build_all(ws, repeat=2) == ["built", "built"]
    assert build_all(ws, repeat=1) == ["restored", "restored"]


def test_a_corrupt_blob_is_removed_and_the_stage_rebuilt(ws, capsys):
    build_all(ws)
    blobs = [p for p in (ws / "cache" / "cas").rglob("*") if p.is_file()]
    for blob in blobs:
        blob.write_bytes(b"rotten")
    (ws / "out" / "upper.txt").unlink()
    assert build(ws, "upper") == "built"
    assert "bytes do not match their sha256" in capsys.readouterr().err
    assert (ws / "out" / "upper.txt").read_text() == "A\nB\n"
    assert runs(ws, "upper") == 2


def test_a_stage_that_skips_an_output_fails_and_stores_nothing(ws):
    def lazy(inputs, outputs, config):
        outputs["upper"].parent.mkdir(exist_ok=True)

    s, _ = specs(ws)["upper"]
    with pytest.raises(RuntimeError, match="did not write"):
        execute_spec(s, "fake-lazy", lazy, Store(ws / "cache"), work=ws / "tmp")
    assert not (ws / "out").exists() and not list((ws / "tmp").iterdir())
    assert not (ws / "cache" / "ac").exists()


def test_a_missing_input_names_the_fix(ws):
    (ws / "source.txt").unlink()
    with pytest.raises(FileNotFoundError, match="fix: run `doit build`"):
        build(ws, "upper")


def _build_in_process(ws: Path, stage: str) -> subprocess.Popen:
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
            f"from pathlib import Path; import test_engine as t\n"
            f"print(t.build(Path({str(ws)!r}), {stage!r}))")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def _wait_for_run(ws: Path, stage: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while runs(ws, stage) == 0:
        assert time.monotonic() < end, "the stage never started"
        time.sleep(0.05)


def test_a_killed_build_leaves_nothing_and_the_next_one_builds(ws):
    (ws / "pause").write_text("60")
    proc = _build_in_process(ws, "upper")
    _wait_for_run(ws, "upper")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (ws / "out").exists()            # nothing half-written in place
    assert len(list((ws / "tmp").iterdir())) == 1
    (ws / "pause").unlink()
    assert build(ws, "upper") == "built"
    assert not list((ws / "tmp").iterdir())     # the dead build's temp dir is gone too
    assert (ws / "out" / "upper.txt").read_text() == "A\nB\n"


def test_concurrent_builds_of_one_stage_run_it_once(ws):
    (ws / "pause").write_text("1")
    procs = [_build_in_process(ws, "upper") for _ in range(3)]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes == ["built", "restored", "restored"]
    assert runs(ws, "upper") == 1


def test_a_replaced_output_tree_never_goes_missing(tmp_path):
    """Another build restoring the same tree output must not make it vanish, not even for a
    moment, under a stage that reads it: a reader polling it while it is replaced again and
    again always finds it, whole."""
    import threading

    from stages.engine.store import replace_tree

    dst = tmp_path / "params"
    dst.mkdir()
    (dst / "a.bin").write_bytes(b"0")
    misses, done = [], threading.Event()

    def poll():
        while not done.is_set():
            if not (dst / "a.bin").is_file():
                misses.append(1)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for i in range(300):
            new = tmp_path / f"new{i}"
            new.mkdir()
            (new / "a.bin").write_bytes(str(i).encode())
            replace_tree(new, dst)
            assert not new.exists()
    finally:
        done.set()
        reader.join()
    assert not misses
    assert (dst / "a.bin").read_bytes() == b"299" and sorted(os.listdir(tmp_path)) == ["params"]


def test_a_failure_that_names_its_fix_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch):
    from stages.engine.errors import BuildError
    from stages.engine.runner import DEBUG, one_line

    monkeypatch.delenv(DEBUG, raising=False)
    assert one_line(BuildError("plan:unet: 2 GiB buffer; fix: a smaller size")) == \
        "error: plan:unet: 2 GiB buffer; fix: a smaller size"
    assert one_line(FileNotFoundError("upper: input source is missing; fix: run `doit build`")) \
        == "error: upper: input source is missing; fix: run `doit build`"
    assert one_line(KeyError("features")) is None
    monkeypatch.setenv(DEBUG, "1")
    assert one_line(BuildError("x; fix: y")) is None
