"""sampler_tables: every sampler's coefficients for every step count, as schedules.json.

The page's denoising loop multiplies by these numbers and re-derives none of them; they are
measured from diffusers' own scheduler classes (stages/runtime/samplers.py says how) on the
model's scheduler_config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.engine.rule import Rule, Spec
from stages.runtime.samplers import MAX_STEPS, tables


def spec(r: Rule) -> Spec:
    return r.spec({"scheduler_config.json":
                   r.out("noise_scheduler", "scheduler_config.json", "model")},
                  {"schedules.json": r.common / "schedules.json"}, {"max_steps": MAX_STEPS})


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    scheduler_config = json.loads(inputs["scheduler_config.json"].read_text())
    data = tables(scheduler_config, cfg["max_steps"])
    outputs["schedules.json"].write_text(json.dumps(data, separators=(",", ":"),
                                                    allow_nan=False) + "\n")
