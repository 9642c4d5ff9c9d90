"""A one-line progress bar on stderr for long stages (weight conversion, capture, import).

doit's reporter shows which task runs; this shows how far inside it. It redraws in place on a
terminal and prints a few milestones otherwise, so CI logs stay short.
"""

from __future__ import annotations

import sys
import time


class Bar:
    def __init__(self, label: str, total: int, unit: str = ""):
        self.label, self.total, self.unit = label, max(total, 1), unit
        self.done, self.start, self._last = 0, time.monotonic(), -1
        self.tty = sys.stderr.isatty()

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.done + n, self.total)
        frac = self.done / self.total
        step = int(frac * 4)  # off a terminal: print at 25 % steps only
        if not self.tty and step == self._last and self.done < self.total:
            return
        self._last = step
        width = 24
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        line = (f"    {self.label} [{bar}] {self.done}/{self.total}{self.unit} "
                f"{time.monotonic() - self.start:.1f}s {note}")
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        if self.tty and self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def phase(label: str, what: str) -> None:
    """A single progress line for a step that cannot report partial progress."""
    sys.stderr.write(f"    {label}: {what}\n")
    sys.stderr.flush()
