"""noise_scheduler: the noise scheduler's config as diffusers writes it (scheduler_config.json).

diffusers loads it here, so a bad value fails the build rather than the page; the page and the
Python runner read their coefficients from this one file.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from stages.engine.rule import Rule, Spec, model_files


def spec(r: Rule) -> Spec:
    """The local model's scheduler config, or the model config's [scheduler], in."""
    model_dir = r.cfg.pretrained_path
    inputs = model_files(model_dir / "scheduler", (".json",)) if model_dir else {}
    return r.spec(inputs, {"scheduler_config.json": r.common / "scheduler_config.json"},
                  {"scheduler": r.cfg.model["scheduler"], "pretrained": bool(model_dir)})


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import diffusers

    with tempfile.TemporaryDirectory() as tmp:
        if cfg["pretrained"]:
            config = json.loads(inputs["scheduler_config.json"].read_text())
        else:
            config = {k: v for k, v in cfg["scheduler"].items() if k != "class_name"}
            config["_class_name"] = cfg["scheduler"]["class_name"]
        scheduler = getattr(diffusers, config["_class_name"]).from_config(config)
        scheduler.save_config(tmp)
        shutil.copyfile(Path(tmp) / "scheduler_config.json", outputs["scheduler_config.json"])
