"""The name of a param that `main` takes transposed, and the weight it is made from.

On CPUs a weight that `main` reads only through permute_dims is taken transposed
(stages/passes/transposed_weights.py): the param `<W>_transposed` holds W.T, and emit writes
it from W (after any LoRA). This module is that naming, shared by the pass and emit. numpy only.
"""

from __future__ import annotations

SUFFIX = "_transposed"


def original(param: str) -> tuple[str, bool]:
    """(the param of the import stage that `param` is made from, whether it is its transpose)."""
    if param.endswith(SUFFIX):
        return param[:-len(SUFFIX)], True
    return param, False
