"""The build summary: doit's console reporter, plus a count of what each stage task did.

    stages: N built, M restored, K up-to-date

built = the stage ran, restored = its outputs came from cache/, up-to-date = doit skipped it
(inputs, config slice and sources unchanged). The same counts go to
dist/<model>/<target>/build-report.json, with the task names in each group, and a line per
build is appended to cache/history.jsonl for `doit cache:stats`. Stages restored from the
remote tier count as restored; the report also says how many of them were downloaded. A run of
a command that uses the build (`commands`: generate, serve) checks the stages it depends on and
prints the counts, but leaves the build's report as the build wrote it.
"""

from __future__ import annotations

import json
import time

from doit.reporter import ConsoleReporter

from stages.engine.store import atomic_write_bytes


class BuildReporter(ConsoleReporter):
    """Counts stage tasks (those named in `stage_tasks`); set the class attributes in dodo.py."""

    stage_tasks: frozenset[str] = frozenset()
    commands: frozenset[str] = frozenset()   # tasks that use the build: their runs keep its report
    report_path = None
    history_path = None   # cache/history.jsonl: what `doit cache:stats` reads hit rates from

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.groups = {"built": [], "restored": [], "up-to-date": []}
        self.downloaded = 0  # restored stages whose bytes came from the remote tier
        self.ran_command = False

    def execute_task(self, task):
        super().execute_task(task)
        self.ran_command |= task.name in self.commands

    def add_success(self, task):
        super().add_success(task)
        if task.name in self.stage_tasks:
            outcome = task.values.get("outcome", "built")
            self.downloaded += outcome == "downloaded"
            self.groups["restored" if outcome == "downloaded" else outcome].append(task.name)

    def skip_uptodate(self, task):
        super().skip_uptodate(task)
        if task.name in self.stage_tasks:
            self.groups["up-to-date"].append(task.name)

    def complete_run(self):
        super().complete_run()
        counts = {k: len(v) for k, v in self.groups.items()}
        if not any(counts.values()):
            return  # not a build (doit list, doit help, ...)
        self.write(f"stages: {counts['built']} built, {counts['restored']} restored, "
                   f"{counts['up-to-date']} up-to-date\n")
        if self.report_path is not None and not self.failures and not self.ran_command:
            atomic_write_bytes(self.report_path, json.dumps(
                {"counts": counts, "downloaded": self.downloaded, "tasks": self.groups},
                indent=1).encode() + b"\n")
        if self.history_path is not None:
            self.history_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.history_path, "a") as f:  # one short line: an append is atomic
                f.write(json.dumps({"time": int(time.time()), **counts,
                                    "downloaded": self.downloaded,
                                    "failed": len(self.failures)}) + "\n")
