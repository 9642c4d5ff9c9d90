"""The build DAG: which stages there are, in what order, and each one's Spec for a component.

Each stage module declares its own inputs, outputs and config slice in `spec(rule)`, next to
its `run()` (stages/engine/rule.py); this module only lists the stages and asks them. dodo.py
turns the list into doit tasks and stages/engine/runner.py executes one entry; the stage keys
and the tests read the same specs. Nothing here imports torch or tvm.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from stages.engine.config import (ROOT, Config, default_variant, shape_variant, split_variant,
                                  variant_features, variant_size)
from stages.engine.rule import Rule, Spec
from stages.passes import pipeline

BUILD = ROOT / "build"
DIST = ROOT / "dist"

# Stage name -> the module whose spec(rule) declares it and whose run(inputs, outputs, config)
# does the work, in DAG order.
STAGES = {
    "checkpoint": "stages.checkpoint",
    "toolchain": "stages.toolchain.runtime_objects",
    "tokenizer": "stages.tokenizer",
    "noise_scheduler": "stages.noise_scheduler",
    "sampler_tables": "stages.sampler_tables",
    "lora": "stages.lora",
    "weights": "stages.weights",
    "capture": "stages.capture",
    "import": "stages.import_graph",
    "passes": "stages.passes.apply",
    "schedule": "stages.schedule",
    "plan": "stages.plan",
    "compile": "stages.compile",
    "emit": "stages.emit",
    "verify": "stages.verify",
    "package": "stages.package",
    "bundle": "stages.bundle",
}
MODEL_STAGES = ("checkpoint", "toolchain", "tokenizer", "noise_scheduler",   # once per model
                "sampler_tables", "lora")
FINAL_STAGES = ("bundle", "package")                     # once per model, after every component
WASM_ONLY = ("toolchain", "bundle")                      # stages of targets run by a browser
PRETRAINED_ONLY = ("checkpoint",)                        # stages of a local model's weights
LORA_ONLY = ("lora",)                                    # stages of a build with lora=...
COMPONENT_STAGES = tuple(s for s in STAGES if s not in MODEL_STAGES + FINAL_STAGES)


@cache
def module(stage: str):
    """The module of a stage: its spec() and run()."""
    return importlib.import_module(STAGES[stage])


def spec(cfg: Config, stage: str, component: str = "model") -> Spec:
    """The inputs, outputs and config slice of one stage for one component variant
    (`unet`, or `unet-fp16`: see config.split_variant), as the stage's module declares them."""
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}")
    base, precision = split_variant(component)
    # Stages run once per component (weights) or per component and image size (capture,
    # import), whatever the precision: their outputs are float32 (a float16 variant is made
    # from the float32 graph by a pass: stages/passes/to_float16.py). Every variant gets the
    # shared entry.
    shared = {"weights": base, "capture": shape_variant(component),
              "import": shape_variant(component)}.get(stage, component)
    if shared != component:
        return spec(cfg, stage, shared)
    rule = Rule(cfg, stage, component, base, precision, variant_features(component), ROOT,
                lambda stage_, component_: spec(cfg, stage_, component_),
                pipeline.TVM_PASSES.get(stage, ()), variant_size(component),
                default_variant(component))
    return module(stage).spec(rule)


def all_specs(cfg: Config) -> list[Spec]:
    """Every stage entry of a model + target build, in DAG order."""
    specs = [spec(cfg, s) for s in MODEL_STAGES if needed(cfg, s)]
    specs += [x for s in COMPONENT_STAGES for c in cfg.variants
              for x in [spec(cfg, s, c)] if x.component == c]
    specs += [spec(cfg, s) for s in FINAL_STAGES if needed(cfg, s)]
    return specs


def needed(cfg: Config, stage: str) -> bool:
    """Whether a model-level stage runs for this model and target: the toolchain and the page
    for wasm targets, the checkpoint check for a local model's weights, the LoRA factors for a
    build that names LoRAs."""
    if stage in WASM_ONLY and cfg.target["target"]["library"] != "wasm":
        return False
    if stage in LORA_ONLY:
        return bool(cfg.loras)
    return stage not in PRETRAINED_ONLY or cfg.pretrained_path is not None


def report_path(cfg: Config) -> Path:
    """Where the build's `stages: N built, ...` summary is written as JSON."""
    return DIST / cfg.model_name / cfg.target_name / "build-report.json"
