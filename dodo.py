"""websd: Stable Diffusion compiled for the browser. This file wires the stages into doit tasks.

    doit build                                 # tiny model, llvm target (the defaults)
    doit build model=sd-v1-5                   # full-size SD v1.5 architecture, random weights
    doit build model=sd-v1-5 path=/data/sd15   # real weights from a local diffusers directory
    doit capture:unet                          # one stage of one component
    doit list --all                            # every task

Each stage task is keyed by its input files (doit's file_dep), its config slice, its source and
the sources it imports, and tool versions (the `uptodate` key below); inside the action the
store in cache/ restores outputs built before anywhere. The table of stages lives in
stages/dag.py. Importing this file imports neither torch nor tvm.
"""

import os
import sys

from doit import get_var
from doit.tools import config_changed

from stages import cache_admin, config, dag, remote, runner, tune
from stages.report import BuildReporter

# --- settings: model and target, from the command line (`doit build model=... target=...`) --
MODEL = get_var("model", "tiny")
TARGET = get_var("target", "llvm")
MODEL_PATH = get_var("path", None)

try:
    CFG = config.load(MODEL, TARGET, MODEL_PATH)
    # the remote tier of cache/: configs/cache.toml, WEBSD_CACHE_* in the environment
    REMOTE = remote.RemoteSettings.load(config.CONFIGS / "cache.toml")
except (config.ConfigError, remote.RemoteConfigError) as error:
    sys.exit(f"error: {error}")

SPECS = dag.all_specs(CFG)
BuildReporter.stage_tasks = frozenset(s.task for s in SPECS)
BuildReporter.report_path = dag.report_path(CFG)
BuildReporter.history_path = runner.CACHE / "history.jsonl"

os.makedirs("build", exist_ok=True)
DOIT_CONFIG = {
    "default_tasks": ["build"],
    # one dependency file per model + target, so switching between them rebuilds nothing
    "dep_file": f"build/.doit-{MODEL}-{TARGET}.sqlite3",
    "reporter": BuildReporter,
}


def _rel(path) -> str:
    """Repo paths relative (the doit db survives a move); outside ones (a local model) absolute."""
    path = os.path.abspath(path)
    inside = os.path.commonpath([path, str(config.ROOT)]) == str(config.ROOT)
    return os.path.relpath(path, config.ROOT) if inside else path


def _task(s: dag.Spec) -> dict:
    return {
        "actions": [(runner.doit_action, [MODEL, TARGET, MODEL_PATH, REMOTE, s.stage,
                                          s.component])],
        "file_dep": [_rel(p) for p in s.inputs.values()],
        "targets": [_rel(p) for p in s.outputs.values()],
        "uptodate": [config_changed(runner.static_key(s))],
        "verbosity": 2,
        "clean": True,
    }


def _per_component(stage: str):
    for component in config.COMPONENTS:
        yield {"name": component, **_task(dag.spec(CFG, stage, component))}


# --- model-level stages ---------------------------------------------------------------------

def task_toolchain():
    """TVM's wasm runtime objects, compiled by emscripten (targets whose library is wasm)."""
    if CFG.target["target"]["library"] == "wasm":
        return _task(dag.spec(CFG, "toolchain"))
    return {"actions": None, "doc": "not needed for this target"}


def task_tokenizer():
    """CLIP tokenizer as tokenizer.json (real BPE vocabulary, or the local model's)."""
    return _task(dag.spec(CFG, "tokenizer"))


def task_scheduler():
    """Noise scheduler config, written by diffusers."""
    return _task(dag.spec(CFG, "scheduler"))


# --- per-component stages, in DAG order -----------------------------------------------------

def task_weights():
    """Component weights as safetensors + config.json (seeded random init, or a local model)."""
    yield from _per_component("weights")


def task_capture():
    """torch.export of the component at the configured shapes -> graph.pt2."""
    yield from _per_component("capture")


def task_import():
    """Captured graph -> Relax IRModule (JSON) + params (safetensors by Relax name)."""
    yield from _per_component("import")


def task_passes():
    """The compiler pass pipeline (stages/passes/pipeline.py)."""
    yield from _per_component("passes")


def task_schedule():
    """Apply the tuning database for (model, target, component) when there is one."""
    yield from _per_component("schedule")


def task_plan():
    """Static memory planning -> planned module + plan.json."""
    yield from _per_component("plan")


def task_emit():
    """relax.build + export -> library, params and manifest.json under dist/."""
    yield from _per_component("emit")


def task_verify():
    """Compiled component vs PyTorch on the same weights and inputs -> verify.json."""
    yield from _per_component("verify")


# --- commands outside the build ---------------------------------------------------------------

def task_tune():
    """MetaSchedule tuning into configs/tuning/<model>/<target>/<component>/ (--trials, --top)."""
    for component in config.COMPONENTS:
        yield {
            "name": component,
            "actions": [(tune.doit_action, [MODEL, TARGET, MODEL_PATH, component])],
            "file_dep": [_rel(dag.spec(CFG, "passes", component).outputs["module"])],
            "params": [
                {"name": "trials", "long": "trials", "type": int, "default": -1,
                 "help": "measurements in all (default: the target config's tune.trials)"},
                {"name": "top", "long": "top", "type": int, "default": -1,
                 "help": "tune the N costliest kernels, 0 = all (default: tune.top)"},
            ],
            "uptodate": [False],  # always look: the database itself says what is left to tune
            "verbosity": 2,
        }


def task_cache():
    """Look after cache/: stats (size, hit rates), gc --max-size SIZE (LRU), verify (re-hash)."""
    yield {"name": "stats", "actions": [(cache_admin.stats, [runner.CACHE])],
           "uptodate": [False], "verbosity": 2}
    yield {"name": "verify", "actions": [(cache_admin.verify, [runner.CACHE])],
           "uptodate": [False], "verbosity": 2}
    yield {"name": "gc", "uptodate": [False], "verbosity": 2,
           "actions": [lambda max_size: cache_admin.gc(runner.CACHE,
                                                       cache_admin.parse_size(max_size))],
           "params": [{"name": "max_size", "long": "max-size", "type": str, "default": "10G",
                       "help": "size to bring cache/ under, e.g. 500M, 20G (default 10G)"}]}


def task_build():
    """Build and verify every component of the model for the target (the default task)."""
    return {
        "actions": None,
        "task_dep": ["toolchain", "tokenizer", "scheduler"]
                    + [f"verify:{c}" for c in config.COMPONENTS],
    }
