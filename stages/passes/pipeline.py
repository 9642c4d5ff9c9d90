"""The one ordered list of Relax passes that every component goes through, phase by phase.

Each step names a module in stages/passes/ whose `make(target)` returns a tvm Pass. A step may
be limited to some components or target kinds; a component's `passes` stage key covers only
the modules of the steps it runs, so editing a UNet-only pass rebuilds only the UNet.
To disable a step, keep its line and set `components=()`.
This module is read by dodo.py at load time: it imports no tvm.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL = ("text_encoder", "unet", "vae_decoder")


@dataclass(frozen=True)
class Step:
    module: str
    components: tuple[str, ...] = ALL
    targets: tuple[str, ...] | None = None     # target kinds; None = every target


PIPELINE = (
    # phase 1: graph rewrites on high-level Relax ops
    Step("safe_softmax", components=("unet",)),
    # phase 2: lower every op to TensorIR
    Step("legalize"),
    # phase 3: constant folding and operator fusion
    Step("fold_constants"),
    Step("fuse"),
    # phase 4: cleanup
    Step("dead_code"),
)


def _selected(component: str, target_kind: str) -> list[Step]:
    return [s for s in PIPELINE if component in s.components
            and (s.targets is None or target_kind in s.targets)]


def steps(component: str, target_kind: str) -> list[str]:
    """Names of the steps a component runs, in order."""
    return [s.module for s in _selected(component, target_kind)]


def modules(component: str, target_kind: str) -> tuple[str, ...]:
    """Repo modules of those steps: part of the passes stage key."""
    return tuple(f"stages.passes.{name}" for name in steps(component, target_kind))


def build(component: str, target):
    """The tvm Sequential of a component's steps for a tvm Target."""
    import importlib

    import tvm

    passes = [importlib.import_module(f"stages.passes.{name}").make(target)
              for name in steps(component, target.kind.name)]
    return tvm.transform.Sequential(passes, name=f"websd_{component}")
