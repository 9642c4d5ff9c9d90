"""BuildError: a problem the user fixes (a kernel over the target's limits, a shard that does
not match its manifest), as opposed to a bug. doit reports it as its one line, no traceback."""


class BuildError(Exception):
    """One line: what is wrong, where, and `fix: ...`."""
