"""`doit tune:<component>` writes a per-target MetaSchedule database that the next build applies."""

import json

from conftest import doit, report

UNET_FROM_SCHEDULE = {f"{s}:unet" for s in ("schedule", "plan", "emit", "verify")}


def test_tuning_the_unet_rebuilds_only_the_unet_and_is_resumable(workspace):
    db = workspace / "configs/tuning/tiny/llvm/unet"
    proc = doit(workspace, "tune:unet", "--trials", "8", "--top", "1")
    assert "1 to tune" in proc.stderr
    records = (db / "database_tuning_record.json").read_text().splitlines()
    # a record is [workload, [trace, run_secs, ...]]; failed candidates carry 1e10 s
    seconds = [min(json.loads(r)[1][1]) for r in records]
    assert records and min(seconds) < 1.0, seconds

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
    assert not (workspace / "configs/tuning/tiny/llvm/text_encoder").exists()
