"""The build DAG as data: for each stage and component, its input files, its output files, the
module that runs it, the repo sources it depends on, and its slice of the config.

dodo.py turns this table into doit tasks and stages/runner.py executes one entry. Keeping it
here, apart from both, means the doit wiring, the stage keys and the tests read one definition.
Nothing here imports torch or tvm.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path

from stages.config import COMPONENTS, ROOT, Config, split_variant, variant_features
from stages.passes import pipeline

BUILD = ROOT / "build"
DIST = ROOT / "dist"
TUNING = ROOT / "configs" / "tuning"
WEB = ROOT / "web"

# Stage name -> the module whose run(inputs, outputs, cfg) does the work, in DAG order.
STAGES = {
    "toolchain": "stages.toolchain.runtime_objects",
    "tokenizer": "stages.tokenizer",
    "scheduler": "stages.scheduler",
    "schedules": "stages.schedules",
    "weights": "stages.weights",
    "capture": "stages.capture",
    "import": "stages.import_graph",
    "passes": "stages.passes.apply",
    "schedule": "stages.schedule",
    "plan": "stages.plan",
    "emit": "stages.emit",
    "verify": "stages.verify",
    "package": "stages.package",
    "bundle": "stages.bundle",
}
MODEL_STAGES = ("toolchain", "tokenizer", "scheduler", "schedules")   # once per model
FINAL_STAGES = ("bundle", "package")                     # once per model, after every component
WASM_ONLY = ("toolchain", "bundle")                      # stages of targets run by a browser
RUNTIME_OBJECTS = ("wasm_runtime.o", "tvmjs_support.o", "webgpu_runtime.o")
COMPONENT_STAGES = tuple(s for s in STAGES if s not in MODEL_STAGES + FINAL_STAGES)
# Stages run once per component, whatever the precision: their outputs are float32 (a float16
# variant is made from the float32 graph by a pass: stages/passes/to_float16.py).
PRECISION_FREE = ("weights", "capture", "import")

# The diffusers subfolder each component's weights come from in a local model directory.
SUBFOLDER = {"text_encoder": "text_encoder", "unet": "unet", "vae_decoder": "vae"}


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


def _model_files(directory: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    return {p.name: p for p in sorted(directory.iterdir()) if p.suffix in suffixes}


def clip_vocab() -> Path:
    """The CLIP BPE vocabulary shipped inside the open-clip-torch wheel (read, never imported)."""
    try:
        dist = importlib.metadata.distribution("open-clip-torch")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("open-clip-torch is not installed; fix: pip install --no-deps "
                                "open-clip-torch (it carries the CLIP BPE vocabulary)") from None
    return Path(dist.locate_file("open_clip/bpe_simple_vocab_16e6.txt.gz"))


def spec(cfg: Config, stage: str, component: str = "model") -> Spec:
    """The inputs, outputs and config slice of one stage for one component variant
    (`unet`, or `unet-fp16`: see config.split_variant)."""
    m, t = cfg.model_name, cfg.target_name
    base, precision = split_variant(component)
    features = variant_features(component)
    # NOTE: only a feature variant's keys name its features: the plain variants' keys stay put
    feat = {"features": list(features)} if features else {}
    if stage in PRECISION_FREE and base != component:
        return spec(cfg, stage, base)
    common = BUILD / m / component / stage           # target-independent stages
    per_target = BUILD / m / t / component / stage   # stages whose output depends on the target
    dist = DIST / m / t / component
    model_dir = cfg.pretrained_path
    mcfg = cfg.model["model"]
    target = cfg.target["target"]

    def out(stage_: str, name: str) -> Path:
        return spec(cfg, stage_, component).outputs[name]

    if stage == "toolchain":
        from stages import toolchain

        # NOTE: independent of the model, so every model shares one build through cache/
        return Spec(stage, component, toolchain.header_files(),
                    {name: BUILD / "_toolchain" / t / name for name in RUNTIME_OBJECTS},
                    {"emcc": toolchain.emcc_version()})
    if stage == "tokenizer":
        inputs = (_model_files(model_dir / "tokenizer", (".json", ".txt"))
                  if model_dir else {"vocab": clip_vocab()})
        names = ("tokenizer.json", "tokenizer_config.json")
        return Spec(stage, component, inputs, {n: common / n for n in names},
                    {"max_length": cfg.model["text_encoder"]["max_position_embeddings"],
                     "pretrained": bool(model_dir)})
    if stage == "scheduler":
        inputs = (_model_files(model_dir / "scheduler", (".json",)) if model_dir else {})
        return Spec(stage, component, inputs,
                    {"scheduler_config.json": common / "scheduler_config.json"},
                    {"scheduler": cfg.model["scheduler"], "pretrained": bool(model_dir)})
    if stage == "schedules":
        return Spec(stage, component,
                    {"scheduler_config.json":
                         spec(cfg, "scheduler").outputs["scheduler_config.json"]},
                    {"schedules.json": common / "schedules.json"}, {"max_steps": 50})
    if stage == "weights":
        inputs = (_model_files(model_dir / SUBFOLDER[base], (".json", ".safetensors", ".bin"))
                  if model_dir else {})
        return Spec(stage, component, inputs,
                    {"config": common / "config.json", "weights": common / "model.safetensors"},
                    {"component": component, "init": mcfg["init"], "seed": mcfg["seed"],
                     "arch": cfg.arch(component)})
    if stage == "capture":
        return Spec(stage, component,
                    {"config": out("weights", "config"), "weights": out("weights", "weights")},
                    {"graph": common / "graph.pt2"},
                    {"component": component, "inputs": cfg.input_specs(component)})
    if stage == "import":
        return Spec(stage, component, {"graph": out("capture", "graph")},
                    {"module": common / "module.json", "params": common / "params.safetensors"},
                    {"component": component})
    if stage == "passes":
        return Spec(stage, component, {"module": out("import", "module")},
                    {"module": per_target / "module.json"},
                    {"component": base, "precision": precision, "target": target["tvm"], **feat,
                     "passes": pipeline.steps(stage, base, target["tvm"]["kind"], precision,
                                              features)},
                    modules=pipeline.modules(stage, base, target["tvm"]["kind"], precision,
                                             features))
    if stage == "schedule":
        db = TUNING / m / t / component
        inputs = {"module": out("passes", "module")}
        inputs.update({p.name: p for p in sorted(db.glob("database_*.json"))} if db.is_dir()
                      else {})
        limits = {k: target[k] for k in ("max_storage_buffer_binding_size",) if k in target}
        return Spec(stage, component, inputs, {"module": per_target / "module.json"},
                    {"component": base, "precision": precision, "target": target["tvm"],
                     **limits, **feat,
                     "passes": pipeline.steps(stage, base, target["tvm"]["kind"], precision,
                                              features)},
                    modules=pipeline.modules(stage, base, target["tvm"]["kind"], precision,
                                             features))
    if stage == "plan":
        limits = {k: target[k] for k in ("max_storage_buffer_binding_size",) if k in target}
        return Spec(stage, component, {"module": out("schedule", "module")},
                    {"module": per_target / "module.json", "plan": per_target / "plan.json"},
                    {"component": component, "target": target["tvm"], **limits})
    if stage == "emit":
        inputs = {"module": out("plan", "module"), "params": out("import", "params")}
        if target["library"] == "wasm":
            inputs.update(spec(cfg, "toolchain").outputs)
        return Spec(stage, component, inputs,
                    {"library": dist / f"{component}.{target['library']}",
                     "params": dist / "params",
                     "manifest": dist / "manifest.json"},
                    {"component": component, "target": target["tvm"], "precision": precision,
                     "shard_mb": target["shard_mb"], **feat},
                    modules=("stages.manifest",),   # the runner writes manifest.json
                    trees=frozenset({"params"}))
    if stage == "verify":
        inputs = {"library": out("emit", "library"), "params": out("emit", "params"),
                  "manifest": out("emit", "manifest"),
                  "config": out("weights", "config"), "weights": out("weights", "weights")}
        if target["library"] == "wasm":   # the Node + Dawn harness and its pinned packages
            inputs.update({"harness": WEB / "verify" / "run_component.mjs",
                           "plan": out("plan", "plan"),
                           "loader": WEB / "src" / "params.js",
                           "package-lock": WEB / "package-lock.json"})
        vcfg = cfg.target["verify"]
        threshold = vcfg["max_rel_l2_fp16"] if precision == "float16" else vcfg["max_rel_l2"]
        return Spec(stage, component, inputs,
                    {"report": dist / "verify.json"},
                    {"component": base, "precision": precision, "target": target["tvm"], **feat,
                     "inputs": cfg.input_specs(base), "max_rel_l2": threshold,
                     "seed": vcfg["seed"], "vocab_size": cfg.model["text_encoder"]["vocab_size"]},
                    tree_inputs=frozenset({"params"}))
    if stage == "package":
        inputs = {"tokenizer.json": spec(cfg, "tokenizer").outputs["tokenizer.json"],
                  "tokenizer_config.json":
                      spec(cfg, "tokenizer").outputs["tokenizer_config.json"],
                  "scheduler_config.json":
                      spec(cfg, "scheduler").outputs["scheduler_config.json"],
                  "schedules.json": spec(cfg, "schedules").outputs["schedules.json"]}
        if target["library"] == "wasm":   # the page, listed in the manifest like the rest
            inputs.update({f"page/{n}": p for n, p in spec(cfg, "bundle").outputs.items()})
        for v in cfg.variants:
            inputs.update({f"{v}/manifest.json": out_of(cfg, "emit", v, "manifest"),
                           f"{v}/verify.json": out_of(cfg, "verify", v, "report"),
                           f"{v}/plan.json": out_of(cfg, "plan", v, "plan")})
        top = DIST / m / t
        return Spec(stage, component, inputs,
                    {**{n: top / n for n in ("tokenizer.json", "tokenizer_config.json",
                                             "scheduler_config.json", "schedules.json")},
                     "index": top / "manifest.json"},
                    {"model": m, "target": t, "variants": list(cfg.variants),
                     "library": target["library"], "image_size": mcfg["image_size"],
                     "latent_size": cfg.latent_size(),
                     "vae_scaling_factor": cfg.model["vae"]["scaling_factor"],
                     "workgroup_limits": {
                         "maxComputeInvocationsPerWorkgroup": target["tvm"].get("max_num_threads"),
                         "maxComputeWorkgroupStorageSize":
                             target["tvm"].get("max_shared_memory_per_block")},
                     "inputs": {c: cfg.input_specs(c) for c in COMPONENTS}})
    if stage == "bundle":
        src = {f"src/{p.name}": p for p in sorted((WEB / "src").glob("*.js"))}
        top = DIST / m / t
        return Spec(stage, component,
                    {"index.html": WEB / "index.html", **src,
                     "package-lock.json": WEB / "package-lock.json"},
                    {"index.html": top / "index.html", "app.js": top / "app.js"}, {})
    raise KeyError(f"unknown stage {stage!r}")


def out_of(cfg: Config, stage: str, component: str, name: str) -> Path:
    return spec(cfg, stage, component).outputs[name]


def all_specs(cfg: Config) -> list[Spec]:
    """Every stage entry of a model + target build, in DAG order."""
    wasm = cfg.target["target"]["library"] == "wasm"
    specs = [spec(cfg, s) for s in MODEL_STAGES if s not in WASM_ONLY or wasm]
    specs += [spec(cfg, s, c) for s in COMPONENT_STAGES for c in cfg.variants
              if not (s in PRECISION_FREE and split_variant(c)[1] != "float32")]
    specs += [spec(cfg, s) for s in FINAL_STAGES if s not in WASM_ONLY or wasm]
    return specs


def report_path(cfg: Config) -> Path:
    """Where the build's `stages: N built, ...` summary is written as JSON."""
    return DIST / cfg.model_name / cfg.target_name / "build-report.json"
