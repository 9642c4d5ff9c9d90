"""What a stage declares (its Spec) and what it is given to declare it (a Rule).

Each stage module has two functions, like a Bazel rule: `spec(rule) -> Spec`, its input files,
output files and the slice of the config it may read, and `run(inputs, outputs, config)`, the
work. The engine (stages/engine/dag.py) hands spec() a Rule: the config, the component variant
and the paths of the other stages' outputs; the runner gives run() exactly what spec() named.

This module imports nothing of the repo: it is in every stage's key (as the module that
defines what a Spec means), so it changes only when that meaning does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from stages.engine.errors import BuildError


@dataclass(frozen=True)
class Spec:
    stage: str
    component: str
    inputs: dict[str, Path]
    outputs: dict[str, Path]
    config: dict                      # the slice of the config this stage may read
    modules: tuple[str, ...] = field(default=())   # repo sources in the key, besides imports
    trees: frozenset[str] = frozenset()  # outputs that are directories (e.g. parameter shards)
    tree_inputs: frozenset[str] = frozenset()  # inputs that are directories

    @property
    def file_inputs(self) -> dict[str, Path]:
        """The inputs doit can track as files (a directory is tracked by its manifest)."""
        return {n: p for n, p in self.inputs.items() if n not in self.tree_inputs}

    @property
    def file_outputs(self) -> dict[str, Path]:
        return {n: p for n, p in self.outputs.items() if n not in self.trees}

    @property
    def task(self) -> str:
        return self.stage if self.component == "model" else f"{self.stage}:{self.component}"


@dataclass(frozen=True)
class Rule:
    """One stage of one component variant (`unet`, `unet-fp16`, `unet-fp16-sm`; "model" for the
    model-level stages), as its spec() sees it."""

    cfg: Any                          # stages.engine.config.Config
    stage: str
    component: str
    base: str                         # the component without precision and features: "unet"
    precision: str                    # "float32" or "float16"
    features: tuple[str, ...]         # GPU features of the variant: ("subgroup-matrix",)
    root: Path                        # the checkout
    spec_of: Callable[[str, str], Spec]   # (stage, component) -> that stage's Spec
    tvm_passes: tuple[str, ...] = ()      # TVM's passes this stage runs (passes/pipeline.py)
    size: tuple[int, int] | None = None   # (width, height) of a variant of an extra image size
    default: str = ""                     # the variant at the model's default size (`unet-fp16`
    #                                       for `unet-768x512-fp16`): the one that owns the params

    @property
    def feat(self) -> dict:
        """{"features": [...]} for a feature variant, {} otherwise: only a feature variant's
        keys name its features, so the plain variants' keys stay put."""
        return {"features": list(self.features)} if self.features else {}

    @property
    def target(self) -> dict:
        return self.cfg.target["target"]

    @property
    def binding_limit(self) -> dict:
        """{"max_storage_buffer_binding_size": n} where the target caps one buffer (WebGPU),
        {} otherwise: the stages whose output the limit shapes (schedule, plan) key on it."""
        return {k: self.target[k] for k in ("max_storage_buffer_binding_size",) if k in self.target}

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def common(self) -> Path:
        """The output folder of a target-independent stage."""
        return self.build / self.cfg.model_name / self.component / self.stage

    @property
    def per_target(self) -> Path:
        """The output folder of a stage whose output depends on the target."""
        return self.build / self.cfg.model_name / self.cfg.target_name / self.component / self.stage

    @property
    def top(self) -> Path:
        """dist/<model>/<target>/: what the page and the runner load."""
        return self.root / "dist" / self.cfg.model_name / self.cfg.target_name

    @property
    def dist(self) -> Path:
        return self.top / self.component

    def out(self, stage: str, name: str, component: str | None = None) -> Path:
        """Output `name` of `stage` for this component (or `component`; "model" for the
        model-level stages)."""
        return self.spec_of(stage, component or self.component).outputs[name]

    def spec(self, inputs: dict[str, Path], outputs: dict[str, Path], config: dict,
             **more) -> Spec:
        """This stage's Spec (more: modules, trees, tree_inputs)."""
        return Spec(self.stage, self.component, inputs, outputs, config, **more)


def model_files(directory: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """The files of a local model's subfolder with these suffixes, by name: stage inputs.
    A missing or empty subfolder is the model directory's fault, said in one line (BuildError)
    while the DAG is read, before anything is built."""
    layout = ("fix: point path= at a whole diffusers model directory (what save_pretrained "
              "writes: model_index.json, unet/, text_encoder/, vae/, tokenizer/, scheduler/)")
    if not directory.is_dir():
        raise BuildError(f"model directory {directory.parent}: no {directory.name}/ folder; "
                          f"{layout}")
    found = {p.name: p for p in sorted(directory.iterdir()) if p.suffix in suffixes}
    if not found:
        raise BuildError(f"model directory {directory.parent}: {directory.name}/ holds no "
                          f"{' / '.join(suffixes)} file; {layout}")
    return found
