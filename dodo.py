"""websd: Stable Diffusion compiled for the browser. This file wires the stages into doit tasks.

    doit build                                 # the trained shapes model, webgpu: the page
    doit build model=tiny target=llvm          # random-weight tiny model, native (the tests')
    doit build model=sd-v1-5                   # full-size SD v1.5 architecture, random weights
    doit build path=/data/sd15                 # a local diffusers directory, as it is (model sd15)
    doit build model=sd-v1-5 path=/data/sd15   # the same, named sd-v1-5, its TOML's keys on top
    doit build lora=style.safetensors:0.8      # LoRAs merged into the weights (no kernel rebuilds)
    doit capture:unet                          # one stage of one component
    doit list --all                            # every task

Each stage task is keyed by its input files (doit's file_dep), its config slice, its source and
the sources it imports, and tool versions (the `uptodate` key below); inside the action the
store in cache/ restores outputs built before anywhere. The stages, in order, are the table
STAGE_TASKS below; each declares its inputs and outputs in its module's spec() (the modules are
listed in stages/engine/dag.py). Importing this file imports neither torch nor tvm.
"""

import os
import subprocess
import sys

from doit import get_var
from doit.tools import config_changed

from stages.engine import cache_admin, config, dag, host_cpu, remote, runner
from stages.passes import tune
from stages.engine.errors import BuildError
from stages.engine.report import BuildReporter

# TVM's runtime runs its kernels on every core, as torch does (its own default is half the logical
# CPUs: on a 2-core machine, one); set before any stage starts TVM's thread pool
os.environ.setdefault("TVM_NUM_THREADS", str(host_cpu.physical_cores()))

# --- settings: model and target, from the command line (`doit build model=... target=...`) --
MODEL = get_var("model", None)     # default: config.DEFAULT_MODEL, or a local model's directory
TARGET = get_var("target", config.DEFAULT_TARGET)
MODEL_PATH = get_var("path", None)
LORA = get_var("lora", None)       # FILE[:SCALE],...: LoRAs merged into the weights

try:
    CFG = config.load(MODEL, TARGET, MODEL_PATH, LORA)
    # the remote tier of cache/: configs/cache.toml, WEBSD_CACHE_* in the environment
    REMOTE = remote.RemoteSettings.load(config.CONFIGS / "cache.toml")
    SPECS = dag.all_specs(CFG)    # reads a local model directory's layout
except (config.ConfigError, remote.RemoteConfigError, BuildError) as error:
    sys.exit(f"error: {error}")

BuildReporter.stage_tasks = frozenset(s.task for s in SPECS)
BuildReporter.commands = frozenset({"generate", "serve"})
BuildReporter.report_path = dag.report_path(CFG)
BuildReporter.history_path = runner.CACHE / "history.jsonl"

os.makedirs("build", exist_ok=True)
DOIT_CONFIG = {
    "default_tasks": ["build"],
    # one dependency file per model + target, so switching between them rebuilds nothing
    "dep_file": f"build/.doit-{CFG.model_name}-{TARGET}.sqlite3",
    "reporter": BuildReporter,
}


def _rel(path) -> str:
    """Repo paths relative (the doit db survives a move); outside ones (a local model) absolute."""
    path = os.path.abspath(path)
    inside = os.path.commonpath([path, str(config.ROOT)]) == str(config.ROOT)
    return os.path.relpath(path, config.ROOT) if inside else path


def _task(s: dag.Spec) -> dict:
    return {
        "actions": [(runner.doit_action, [MODEL, TARGET, MODEL_PATH, LORA, REMOTE, s.stage,
                                          s.component])],
        "file_dep": [_rel(p) for p in s.file_inputs.values()],
        "targets": [_rel(p) for p in s.file_outputs.values()],
        "uptodate": [config_changed(runner.static_key(s))],
        "verbosity": 2,
        "clean": True,
    }


def _per_component(stage: str):
    """One subtask per component and precision: `emit:unet`, `emit:unet-fp16` (webgpu)."""
    for variant in CFG.variants:
        s = dag.spec(CFG, stage, variant)
        if s.component == variant:   # weights: one per component, shared by its precisions
            yield {"name": variant, **_task(s)}


# --- the DAG: one task per stage, in order (per component variant from `weights` to `verify`).
# Each stage's inputs, outputs and config slice are declared by spec() in its module
# (dag.STAGES), next to the run() that does the work.
STAGE_TASKS = {
    "checkpoint": "A local model's weight files checked against its architecture, before anything else.",
    "toolchain": "TVM's wasm runtime objects, compiled by emscripten (targets whose library is wasm).",
    "tokenizer": "CLIP tokenizer as tokenizer.json (real BPE vocabulary, or the local model's).",
    "noise_scheduler": "Noise scheduler config, written by diffusers.",
    "sampler_tables": "Every sampler's per-step coefficients, for the page's step math (JSON).",
    "lora": "The build's LoRAs (lora=FILE[:SCALE],...) as low-rank factors per weight, checked against the model.",
    "weights": "Component weights as safetensors + config.json (seeded random init, or a local model).",
    "capture": "torch.export of the component at the configured shapes -> graph.pt2.",
    "import": "Captured graph -> Relax IRModule (JSON) + params (safetensors by Relax name).",
    "passes": "The compiler pass pipeline (stages/passes/pipeline.py).",
    "schedule": "Kernel schedules: the tuning database for (model, target, component), then defaults.",
    "plan": "Static memory planning -> planned module + plan.json.",
    "compile": "relax.build + export -> the component's library (.so, or .wasm with its WGSL).",
    "emit": "Library, params (LoRAs merged) and manifest.json under dist/.",
    "verify": "Compiled component vs PyTorch on the same weights and inputs -> verify.json.",
    "bundle": "The page: web/ bundled by esbuild into dist/<model>/<target>/ (wasm targets).",
    "package": "dist/<model>/<target>/: tokenizer, sampler tables and manifest.json of every file.",
}
assert list(STAGE_TASKS) == [*dag.MODEL_STAGES, *dag.COMPONENT_STAGES, *dag.FINAL_STAGES]


def _stage_task(stage: str, doc: str):
    if stage in dag.COMPONENT_STAGES:
        def task():
            yield from _per_component(stage)
    else:
        def task():
            if not dag.needed(CFG, stage):
                return {"actions": None, "doc": "not needed for this model and target"}
            return _task(dag.spec(CFG, stage))
    task.__doc__ = doc
    return task


for _stage, _doc in STAGE_TASKS.items():
    globals()[f"task_{_stage}"] = _stage_task(_stage, _doc)


# --- commands outside the build ---------------------------------------------------------------

def task_tune():
    """MetaSchedule tuning into configs/tuning/<model>/<target>/<component>/ (--trials, --top)."""
    for component in CFG.variants:
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


def task_train():
    """Train the default model (configs/models/shapes.toml) into configs/models/shapes/ (--minutes)."""
    tokenizer = dag.spec(CFG, "tokenizer").outputs["tokenizer.json"].parent

    def action(minutes, device, out):
        from stages.runtime import train  # numpy and up: only when it runs

        argv = ["--out", out, "--tokenizer", str(tokenizer), "--minutes", str(minutes),
                *(["--device", device] if device else [])]
        if train.main(argv) != 0:
            return False

    return {
        "actions": [action],
        "task_dep": ["tokenizer"],   # the CLIP vocabulary, as the build's tokenizer stage writes it
        "params": [{"name": "minutes", "long": "minutes", "type": float, "default": 8.0,
                    "help": "training time in all (a GPU machine: minutes)"},
                   {"name": "device", "long": "device", "type": str, "default": "",
                    "help": "torch device (default: cuda if there is one, else cpu)"},
                   {"name": "out", "long": "out", "type": str,
                    "default": str(config.CONFIGS / "models" / "shapes"),
                    "help": "the diffusers directory to write"}],
        "uptodate": [False], "verbosity": 2,
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


def task_serve():
    """Serve dist/<model>/<target>/ on http://127.0.0.1:PORT/ (--port, default 8000)."""
    from stages.runtime import serve

    return {
        "actions": [lambda port: serve.serve(dag.DIST / CFG.model_name / TARGET, port)],
        "params": [{"name": "port", "long": "port", "type": int, "default": 8000,
                    "help": "TCP port on 127.0.0.1 (0 picks a free one)"}],
        "uptodate": [False], "verbosity": 2,
    }


def task_generate():
    """Text (and an image) -> PNG with the compiled pipeline, natively (llvm): --prompt, ..."""

    def build_native():
        """On another target (the default, webgpu), the llvm build is another doit run: its
        tasks are another config's. It builds what is missing and restores what cache/ has."""
        given = {"model": MODEL, "path": MODEL_PATH, "lora": LORA}
        argv = ["build", "target=llvm", *[f"{k}={v}" for k, v in given.items() if v]]
        print(f"generate runs the native build: doit {' '.join(argv)}", flush=True)
        return subprocess.run([sys.executable, "-m", "doit", *argv]).returncode == 0

    def action(prompt, negative_prompt, seed, steps, guidance, scheduler, width, height,
               init_image, strength, output, compare):
        from stages.runtime import generate  # numpy and up: only when it runs

        if TARGET != "llvm":
            try:   # bad settings are refused before anything is built
                generate.check_given(prompt, negative_prompt, seed, steps, guidance, scheduler,
                                     strength)
            except generate.GenerateError as e:
                print(f"generate: {e}", file=sys.stderr)
                return False
            if not build_native():
                return False
        given = {"--seed": seed, "--steps": steps, "--guidance": guidance,
                 "--scheduler": scheduler, "--width": width, "--height": height,
                 "--init-image": init_image or None,
                 "--strength": strength, "--output": output or None}
        argv = ["--model", CFG.model_name, "--prompt", prompt, "--negative-prompt", negative_prompt,
                *[a for flag, v in given.items() if v is not None for a in (flag, str(v))],
                *(["--lora", LORA] if LORA else []),
                *(["--compare"] if compare else [])]
        if generate.main(argv, prog="doit generate") != 0:
            return False

    from stages.runtime import contract
    from stages.runtime.samplers import SCHEDULERS

    steps, guidance, seed = contract.STEPS, contract.GUIDANCE, contract.SEED
    strength = contract.STRENGTH
    # None: the model's own default (a few-step model's steps, guidance and sampler)
    params = [("prompt", str, "", "the text"), ("negative_prompt", str, "", "the negative text"),
              ("seed", int, None, f"uint32 seed of the initial latents (default {seed['default']})"),
              ("steps", int, None, f"denoising steps, {steps['min']}..{steps['max']} "
                                   f"(default: the model's, usually {steps['default']})"),
              ("guidance", float, None,
               f"classifier-free guidance scale, {guidance['min']:g}..{guidance['max']:g} "
               f"(default: the model's, usually {guidance['default']:g})"),
              ("scheduler", str, None, ", ".join(SCHEDULERS) + " (default: the model's)"),
              ("width", int, None, "image width, one of the build's sizes (model.sizes; "
                                   "default: model.image_size)"),
              ("height", int, None, "image height, one of the build's sizes (default: "
                                    "model.image_size)"),
              ("init_image", str, "", "image-to-image: start from this PNG or JPEG"),
              ("strength", float, None, f"image-to-image strength, {strength['min']:g}.."
                                        f"{strength['max']:g} (default {strength['default']:g})"),
              ("output", str, "", "PNG path (default out/<model>-<seed>.png)")]
    return {
        "actions": [action],
        "task_dep": ["build"] if TARGET == "llvm" else [],
        "params": [{"name": n, "long": n.replace("_", "-"), "type": t, "default": d, "help": h}
                   for n, t, d, h in params]
                  + [{"name": "compare", "long": "compare", "type": bool, "default": False,
                      "help": "also run diffusers on the same weights and latents (PSNR)"}],
        "uptodate": [False], "verbosity": 2,
    }


def task_build():
    """Build and verify every component of the model for the target (the default task)."""
    return {
        "actions": None,
        # NOTE: the checkpoint check first, so a bad local model stops before anything is built
        "task_dep": [s for s in (*dag.MODEL_STAGES, *dag.FINAL_STAGES) if dag.needed(CFG, s)]
                    + [f"verify:{c}" for c in CFG.variants],
    }
