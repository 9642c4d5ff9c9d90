"""Ending the processes a stage started: MetaSchedule's builder and runner pools (TVM's
popen_worker processes) outlive a tuning run that ends on an error, Ctrl-C or a kill signal.

`ending_children(label)` wraps such work: when it ends, every process below this one is asked
to stop (SIGTERM) and killed a few seconds later if still there. Ctrl-C (SIGINT) and SIGTERM do
the same at once and exit (130 / 143) with one line: TVM's tuning loop runs in C++ and swallows
the KeyboardInterrupt of Python's own handler, so Ctrl-C alone did not stop it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

GRACE_S = 5.0


def end_descendants(grace_s: float = GRACE_S) -> int:
    """Terminate, then kill, every process below this one; the number there was."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return len(children)


@contextlib.contextmanager
def ending_children(label: str, kept: str = ""):
    """label: what runs (`tune:unet`); kept: what a stop leaves behind, for its line."""
    def on_signal(signum, frame):
        end_descendants()
        print(f"{label}: stopped ({signal.Signals(signum).name}){'; ' + kept if kept else ''}",
              file=sys.stderr, flush=True)
        os._exit(128 + signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        end_descendants()
