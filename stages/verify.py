"""verify: the compiled component against PyTorch on the same weights and the same inputs.

Inputs are drawn from a fixed seed; the compiled library runs in TVM's VM (llvm, or cuda on a
machine with an NVIDIA GPU) or under WebGPU in Node (webgpu) with the emitted params, loaded through the loader that checks every
shard against manifest.json; the check is the relative L2 error of the output against float32
PyTorch, whatever the variant's precision. Above the threshold (per precision) the build
fails. A feature variant (subgroup matrices) on an adapter without the feature is not run: its
report says so and where it is checked instead. With LoRAs (`lora=`), the PyTorch side is
diffusers' own: each file loaded with its LoRA loader and fused at its scale
(stages/runtime/lora.py), so the merge of stages/lora.py and emit is checked against code that
shares nothing with it. A variant that takes int8 weights (stages/passes/int8_weights.py) is
checked against PyTorch on those weights after the same int8 round trip (quantize.fake): this
checks the compiler; what the rounding costs is measured on the image (tests/test_int8.py).
verify.json records the error and the threshold (no timings: speed is measured in
bench/, and this file must be the same bytes on every machine).
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.engine.config import WEBGPU_FEATURES
from stages.engine.errors import BuildError
from stages.engine.rule import Rule, Spec
from stages.lora import loras_of
from stages.runtime import components, lora
from stages.runtime.component import Component


def rel_l2(actual, expected) -> float:
    import numpy as np

    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-30))


SKIPPED = 3   # run_component.mjs: the adapter lacks a feature or a limit the variant needs


def run_webgpu(inputs: dict[str, Path], example: dict, specs: dict, shape, features=()):
    """Run a wasm component under WebGPU (Dawn) in Node through web/verify/run_component.mjs;
    return its output as a float32 numpy array of `shape`, or, when the adapter lacks one of
    `features` or binds smaller buffers than the plan's largest, the line saying so (a str)."""
    import shutil
    import subprocess
    import tempfile

    import numpy as np

    harness = inputs["harness"]
    if not (harness.parent.parent / "node_modules" / "webgpu").is_dir():
        raise RuntimeError("verify: web/node_modules is missing; fix: (cd web && npm ci)")
    if shutil.which("node") is None:
        raise RuntimeError("verify: node not found; fix: install Node.js 20")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        job = {"wasm": str(inputs["library"]), "params": str(inputs["params"]),
               "manifests": [str(inputs["manifest"]), str(inputs["params_manifest"])],
               "output": str(tmp / "output.bin"),
               "inputs": [], "features": features,
               "largest_buffer_bytes": json.loads(inputs["plan"].read_text())["largest_buffer_bytes"]}
        for name, (in_shape, dtype) in specs.items():
            (tmp / name).write_bytes(np.ascontiguousarray(example[name]).tobytes())
            job["inputs"].append({"path": str(tmp / name), "shape": list(in_shape),
                                  "dtype": dtype})
        (tmp / "job.json").write_text(json.dumps(job))
        proc = subprocess.run(["node", str(harness), str(tmp / "job.json")],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode == SKIPPED:
            return json.loads(proc.stdout.strip().splitlines()[-1])["skipped"]
        if proc.returncode != 0:
            raise RuntimeError(f"verify: the WebGPU run failed: {proc.stderr.strip()[-2000:]}")
        return np.fromfile(tmp / "output.bin", dtype=np.float32).reshape(shape)


def _round_trip_int8(module, plan_file: Path, params_file: Path) -> None:
    """The torch module's weights that the variant takes as int8, through the same rounding."""
    import torch
    from safetensors import safe_open

    from stages.runtime import quantize

    plan = json.loads(plan_file.read_text())
    packed = quantize.int8_weights(plan["param_names"], plan["param_dtypes"])
    if not packed:
        return
    with safe_open(str(params_file), framework="numpy") as f:
        keys = json.loads(f.metadata()["weights"])
    state = module.state_dict()
    with torch.no_grad():
        for name, scale_dtype in packed.items():
            weight = state[keys[name]]
            weight.copy_(torch.from_numpy(quantize.fake(weight.numpy(), scale_dtype)))


def spec(r: Rule) -> Spec:
    """The emitted component and the weights it came from in; verify.json out."""
    # an extra size's variant runs on the params of the default size's (stages/emit.py)
    inputs = {"library": r.out("emit", "library"), "manifest": r.out("emit", "manifest"),
              "params": r.out("emit", "params", r.default),
              "params_manifest": r.out("emit", "manifest", r.default),
              "plan": r.out("plan", "plan"),
              "import_params": r.out("import", "params", r.default),
              "config": r.out("weights", "config"), "weights": r.out("weights", "weights")}
    if r.target["library"] == "wasm":   # the Node + Dawn harness and its pinned packages
        web = r.root / "web"
        inputs.update({"harness": web / "verify" / "run_component.mjs",
                       "component": web / "src" / "model.js",
                       "loader": web / "src" / "params.js",
                       "dispatch": web / "src" / "dispatch.js",
                       "package-lock": web / "package-lock.json"})
    loras = loras_of(r.cfg, r.base)
    inputs.update({f"lora{i}": item.path for i, item in enumerate(loras)})
    vcfg = r.cfg.target["verify"]
    threshold = vcfg["max_rel_l2_fp16"] if r.precision == "float16" else vcfg["max_rel_l2"]
    return r.spec(inputs, {"report": r.dist / "verify.json"},
                  {"component": r.base, "precision": r.precision, "target": r.target["tvm"],
                   **r.feat, "inputs": r.cfg.input_specs(r.component), "max_rel_l2": threshold,
                   "seed": vcfg["seed"],
                   "vocab_size": r.cfg.model["text_encoder"]["vocab_size"],
                   **({"lora_scales": [item.scale for item in loras]} if loras else {})},
                  tree_inputs=frozenset({"params"}))


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import torch
    import tvm

    component = cfg["component"]
    example = components.example_inputs(cfg["inputs"], cfg["seed"], cfg["vocab_size"])
    module = components.load(component, inputs["weights"].parent)
    scales = cfg.get("lora_scales", [])
    if scales:
        lora.fuse_with_diffusers(component, module,
                                 [lora.Lora(inputs[f"lora{i}"], s) for i, s in enumerate(scales)])
    _round_trip_int8(module, inputs["plan"], inputs["import_params"])
    module = components.wrapper(component, module)
    with torch.no_grad():
        expected = module(*(torch.from_numpy(example[n]) for n in cfg["inputs"])).numpy()

    if inputs["library"].suffix == ".wasm":
        needs = [f for feat in cfg.get("features", ()) for f in WEBGPU_FEATURES[feat]]
        actual = run_webgpu(inputs, example, cfg["inputs"], expected.shape, needs)
        if isinstance(actual, str):
            # NOTE: not a pass: the report says where such a variant is checked instead
            report = {"component": component, "precision": cfg["precision"],
                      "features": cfg.get("features", []), "rel_l2": None,
                      "max_rel_l2": cfg["max_rel_l2"], "passed": None,
                      "skipped": f"not run: {actual}; checked on a GPU that has what it "
                                 f"needs by bench/gpu/run_on_device.sh (bench/results/h200/)"}
            outputs["report"].write_text(json.dumps(report, indent=1) + "\n")
            return
    else:
        kind = cfg["target"]["kind"]
        device = tvm.cuda() if kind == "cuda" else tvm.cpu()
        if not device.exist:
            raise BuildError(f"verify:{component}: target {kind} needs an NVIDIA GPU and its "
                             f"driver on this machine; fix: build up to emit here "
                             f"(doit emit target={kind}) and check on a GPU machine "
                             f"(bench/gpu/README.md)")
        compiled = Component(inputs["library"], inputs["params"], inputs["params_manifest"],
                             device)
        actual = compiled(*(example[n] for n in cfg["inputs"]))

    error = rel_l2(actual, expected)
    report = {"component": component, "precision": cfg["precision"], "rel_l2": error, "max_rel_l2": cfg["max_rel_l2"],
              "passed": error <= cfg["max_rel_l2"], "shape": list(actual.shape)}
    if not report["passed"]:
        raise AssertionError(f"verify:{component} ({cfg['precision']}): rel-L2 {error:.3e} > {cfg['max_rel_l2']:.1e} "
                             f"against PyTorch; fix: find the pass that broke it "
                             f"(stages/passes/pipeline.py)")
    outputs["report"].write_text(json.dumps(report, indent=1) + "\n")
