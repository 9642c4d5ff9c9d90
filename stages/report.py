"""The build summary: doit's console reporter, plus a count of what each stage task did.

    stages: N built, M restored, K up-to-date

built = the stage ran, restored = its outputs came from cache/, up-to-date = doit skipped it
(inputs, config slice and sources unchanged). The same counts go to
dist/<model>/<target>/build-report.json, with the task names in each group.
"""

from __future__ import annotations

import json

from doit.reporter import ConsoleReporter

from stages.store import atomic_write_bytes


class BuildReporter(ConsoleReporter):
    """Counts stage tasks (those named in `stage_tasks`); set the class attributes in dodo.py."""

    stage_tasks: frozenset[str] = frozenset()
    report_path = None

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.groups = {"built": [], "restored": [], "up-to-date": []}

    def add_success(self, task):
        super().add_success(task)
        if task.name in self.stage_tasks:
            self.groups[task.values.get("outcome", "built")].append(task.name)

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
        if self.report_path is not None and not self.failures:
            atomic_write_bytes(self.report_path, json.dumps(
                {"counts": counts, "tasks": self.groups}, indent=1).encode() + b"\n")
