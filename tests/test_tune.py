"""`doit tune:<component>` writes a per-target MetaSchedule database that the next build applies,
and leaves no process behind: its builder and runner workers end with it, also on Ctrl-C or a
kill."""

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from conftest import SUITE_VARS, doit, doit_argv, llvm_target, report

MARK = "WEBSD_TEST_RUN"   # in a run's environment, so its descendants can be found by it


def marked(mark: str) -> list[str]:
    """The processes (pid and command line) whose environment carries MARK=mark: what a run
    started, orphaned or not."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get(MARK) == mark:
                found.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])[:200]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found

UNET_FROM_SCHEDULE = {f"{s}:unet" for s in ("schedule", "plan", "compile", "emit", "verify")} | {"package"}


@pytest.mark.long
def test_tuning_the_unet_rebuilds_only_the_unet_and_is_resumable(workspace):
    db = tuning_dir(workspace, "unet")
    mark = uuid.uuid4().hex
    proc = doit(workspace, "tune:unet", "--trials", "8", "--top", "1", env={MARK: mark})
    assert "1 to tune" in proc.stderr
    assert marked(mark) == []   # its workers ended with it
    records = (db / "database_tuning_record.json").read_text().splitlines()
    # a record is [workload, [trace, run_secs, ...]]; failed candidates carry 1e10 s
    seconds = [min(json.loads(r)[1][1]) for r in records]
    assert records and min(seconds) < 1.0, seconds
    assert "default schedule" in proc.stderr and "runner timeout 30 s" in proc.stderr
    assert defaults_recorded(db) == 1   # the default competes: the build takes the faster

    doit(workspace, "build")
    built = report(workspace)["built"]
    assert "schedule:unet" in built and built <= UNET_FROM_SCHEDULE, built
    scheduled = workspace / "build/tiny/llvm/unet/schedule/module.json"
    unscheduled = workspace / "build/tiny/llvm/unet/passes/module.json"
    assert scheduled.read_bytes() != unscheduled.read_bytes()  # the record was applied
    assert json.loads((workspace / "dist/tiny/llvm/unet/verify.json").read_text())["passed"]

    again = doit(workspace, "tune:unet", "--trials", "8", "--top", "1")
    assert "1 already tuned, 0 to tune" in again.stderr
    assert (db / "database_tuning_record.json").read_text().splitlines() == records
    assert not tuning_dir(workspace, "text_encoder").exists()


def tuning_dir(workspace, component: str):
    """Where the suite's tiny llvm build keeps a component's records (under its mcpu)."""
    from stages import schedule
    from stages.engine import config

    return schedule.tuning_dir(workspace, config.load(**SUITE_VARS), component)


def defaults_recorded(db) -> int:
    """How many records of a tuning database replay to their kernel's default CPU schedule
    (stages/passes/cpu_default_schedule.py), compared as scheduled modules, not as traces."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from stages.passes import cpu_default_schedule

    database = ms.database.JSONDatabase(
        path_workload=str(db / "database_workload.json"),
        path_tuning_record=str(db / "database_tuning_record.json"), allow_missing=False)
    target = llvm_target()
    found = 0
    for record in database.get_all_tuning_records():
        mod = record.workload.mod
        with target:
            default = cpu_default_schedule.schedule_of(mod["main"], target)
        replayed = tvm.s_tir.Schedule(mod)
        record.trace.apply_to_schedule(replayed, remove_postproc=False)
        if default is not None:
            try:
                tvm.ir.assert_structural_equal(replayed.mod, default.mod)
                found += 1
            except ValueError:
                pass
    return found


@pytest.mark.long
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_a_stopped_tuning_run_ends_every_worker(workspace, sig):
    mark = uuid.uuid4().hex
    run = subprocess.Popen(doit_argv("tune:unet", "--trials", "64", "--top", "1"), cwd=workspace,
                           env={**os.environ, "PYTHONHASHSEED": "0", MARK: mark},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any("popen_worker" in p for p in marked(mark)):
            assert run.poll() is None, f"tuning ended before its workers started:\n" \
                                       f"{run.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "no popen_worker within 300 s"
            time.sleep(0.5)
        run.send_signal(sig)
        _, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 128 + sig, err[-3000:]
    assert err.rstrip().splitlines()[-1] == "tune:unet: stopped (" + sig.name + \
        "); the records measured so far are kept", err[-3000:]
    assert marked(mark) == [], err[-3000:]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_key(port: int, key: str, seconds: float = 60) -> None:
    import time

    from tvm import rpc

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if key in str(rpc.connect_tracker("127.0.0.1", port).text_summary()):
                return
        except Exception:  # noqa: BLE001  (tracker still starting)
            pass
        time.sleep(0.5)
    raise AssertionError(f"no server registered under {key!r} at the tracker on port {port}")


@pytest.mark.long
def test_tuning_measures_through_an_rpc_tracker(workspace, tmp_path):
    import sys

    tracker_port, server_port = _free_port(), _free_port()
    server_log = tmp_path / "rpc_server.log"
    mark = uuid.uuid4().hex
    env = {**os.environ, MARK: mark}
    procs = [subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host",
                               "127.0.0.1", "--port", str(tracker_port),
                               "--port-end", str(tracker_port + 1)], env=env)]
    try:
        with open(server_log, "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                 "--port", str(server_port), "--port-end", str(server_port + 1),
                 "--tracker", f"127.0.0.1:{tracker_port}", "--key", "websd-test"],
                stdout=log, stderr=subprocess.STDOUT, env=env))
        _wait_for_key(tracker_port, "websd-test")
        toml = workspace / "configs/targets/llvm.toml"
        toml.write_text(toml.read_text() + f'rpc_tracker = "127.0.0.1:{tracker_port}"\n'
                                           f'rpc_key = "websd-test"\n')
        proc = doit(workspace, "tune:unet", "--trials", "8", "--top", "1", env={MARK: mark})
        assert "1 to tune" in proc.stderr
        records = tuning_dir(workspace, "unet") / "database_tuning_record.json"
        seconds = [min(json.loads(r)[1][1]) for r in records.read_text().splitlines()]
        assert seconds and min(seconds) < 1.0, seconds
        assert "load_module" in server_log.read_text()  # candidates ran on the RPC server
    finally:
        import psutil

        for p in reversed(procs):   # the server's session workers with it
            below = psutil.Process(p.pid).children(recursive=True)
            p.terminate()
            p.wait(timeout=30)
            for child in below:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
    assert marked(mark) == []
