"""doit's task loader for this repo: dodo.py, with empty command-line arguments allowed.

doit 0.37 reads `name=value` variables and task names off the command line by looking at each
argument's first character, so an empty one (`doit generate --prompt ""`) raised IndexError
before any task loaded. pyproject.toml names this loader ([tool.doit] loader), so doit imports
it before it reads the arguments: both readers are given the empty arguments in a form they
pass over, and the loader is otherwise doit's own dodo.py loader. Importing this module
imports neither torch nor tvm.
"""

import sys

from doit.cmd_base import DodoTaskLoader
from doit.doit_cmd import DoitMain

_read_variables = DoitMain.process_args


def _process_args(self, cmd_args):
    """doit's own, on the non-empty arguments; the empty ones kept in their places (an empty
    argument is never a `name=value` variable)."""
    rest = iter(_read_variables(self, [a for a in cmd_args if a]))
    out = []
    for arg in cmd_args:
        if not arg:
            out.append(arg)
        elif arg[0] == "-" or "=" not in arg:
            out.append(next(rest))
    return out


DoitMain.process_args = _process_args


class Loader(DodoTaskLoader):
    """dodo.py, as doit loads it by default."""

    def setup(self, opt_values):
        # NOTE: doit imported this module, and so a `stages` package, before dodo.py's directory
        # was on sys.path (a venv shared by two checkouts finds the installed one): forget it,
        # so dodo.py imports the stages/ beside it
        for name in [n for n in sys.modules if n == "stages" or n.startswith("stages.")]:
            del sys.modules[name]
        super().setup(opt_values)

    def load_tasks(self, cmd, pos_args):
        # NOTE: doit looks for task names among the arguments by their first character too; an
        # empty one is an option's value, never a task name
        return super().load_tasks(cmd, [a or "-" for a in pos_args])
