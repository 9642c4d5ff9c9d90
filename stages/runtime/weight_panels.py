"""The name of a param that `main` takes as panels of a weight, and how emit makes them.

On CPUs a weight that `main` reads only through permute_dims (a Linear's W, (n, k)) is taken
as panels (stages/passes/weight_panels.py): the param `<W>_panels<L>`, shape (n / L, k, L),
holds W.T cut into column strips L wide, each strip contiguous: panel[j, kk, i] = W[j*L + i, kk].
A tile of the CPU matmul (stages/passes/cpu_rule.py) that runs its L lanes along n then reads
one contiguous strip, L floats per step, where W.T would be read a row apart per step (2x
slower on AVX2: docs/cpu.md). emit writes the panels from W (after any LoRA). numpy only.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^(?P<weight>.+)_panels(?P<lanes>\d+)$")


def name(weight: str, lanes: int) -> str:
    return f"{weight}_panels{lanes}"


def original(param: str) -> tuple[str, int | None]:
    """(the param of the import stage that `param` is made from, its panels' width or None)."""
    found = _NAME.match(param)
    if found is None:
        return param, None
    return found["weight"], int(found["lanes"])


def panels(weight, lanes: int):
    """W (n, k) as (n / lanes, k, lanes) panels of W.T."""
    n, k = weight.shape
    return weight.reshape(n // lanes, lanes, k).transpose(0, 2, 1)
