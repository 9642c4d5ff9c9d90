"""package: the model's directory in dist/ as one loadable unit, described by manifest.json.

dist/<model>/<target>/ gets the tokenizer, the scheduler config and the scheduler tables
(schedules.json, what the page's step math reads) beside the component
variants that emit wrote, and manifest.json: the sha256 and size of every file under it
(taken from the component manifests, which hashed them), and for each variant its library,
params, precision, features, image size and verify result (a variant of an extra image
size names the params of the default size's variant, which it shares), and what each flavor
(a precision, with the features its variants need) needs from a WebGPU adapter (the largest buffer it binds;
shader-f16 for the float16 variants; subgroups and subgroup matrices for the -sm ones), and
the LoRAs merged into the weights (file name, sha256, scale). The page and the Python runner
start from this file and check every byte they load against it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from stages.engine.config import (COMPONENTS, SIZED, SUBGROUP_SIZE, WEBGPU_FEATURES,
                                  WORKGROUP_STORAGE, default_variant, flavor, split_variant,
                                  variant_features, variant_size)
from stages.engine.manifest import listing
from stages.engine.store import sha256_file
from stages.engine.rule import Rule, Spec
from stages.runtime import contract


COPIED = ("tokenizer.json", "tokenizer_config.json", "scheduler_config.json", "schedules.json")
# what every visit of the page reads besides its flavor's variants (scheduler_config.json is the
# Python runner's: the page steps with schedules.json)
PAGE_READS = ("index.html", "app.js", "model_worker.js", "tokenizer.json",
              "tokenizer_config.json", "schedules.json")


def spec(r: Rule) -> Spec:
    """Every variant's manifest, verify report and plan, the model-level files and the page in;
    the model directory's manifest.json out."""
    inputs = {"tokenizer.json": r.out("tokenizer", "tokenizer.json", "model"),
              "tokenizer_config.json": r.out("tokenizer", "tokenizer_config.json", "model"),
              "scheduler_config.json": r.out("noise_scheduler", "scheduler_config.json", "model"),
              "schedules.json": r.out("sampler_tables", "schedules.json", "model")}
    if r.target["library"] == "wasm":   # the page, listed in the manifest like the rest
        inputs.update({f"page/{n}": p for n, p in r.spec_of("bundle", "model").outputs.items()})
    for v in r.cfg.variants:
        inputs.update({f"{v}/manifest.json": r.out("emit", "manifest", v),
                       f"{v}/verify.json": r.out("verify", "report", v),
                       f"{v}/plan.json": r.out("plan", "plan", v)})
    inputs.update({f"lora{i}": item.path for i, item in enumerate(r.cfg.loras)})
    tvm = r.target["tvm"]
    return r.spec(inputs, {**{n: r.top / n for n in COPIED}, "index": r.top / "manifest.json"},
                  {"model": r.cfg.model_name, "target": r.cfg.target_name,
                   "variants": list(r.cfg.variants), "library": r.target["library"],
                   "image_size": r.cfg.model["model"]["image_size"],
                   "latent_size": r.cfg.latent_size(),
                   "vae_scaling_factor": r.cfg.model["vae"]["scaling_factor"],
                   "workgroup_limits": {
                       "maxComputeInvocationsPerWorkgroup": tvm.get("max_num_threads"),
                       "maxComputeWorkgroupSizeX": tvm.get("max_num_threads"),
                       "maxComputeWorkgroupStorageSize": tvm.get("max_shared_memory_per_block")},
                   "inputs": {c: r.cfg.input_specs(c) for c in COMPONENTS},
                   "sizes": [list(size) for size in r.cfg.sizes],
                   "variant_inputs": {v: r.cfg.input_specs(v) for v in r.cfg.variants},
                   "loras": [{"file": item.path.name, "scale": item.scale}
                             for item in r.cfg.loras],
                   "contract": contract.manifest(
                       r.cfg.model["text_encoder"]["max_position_embeddings"],
                       r.cfg.model.get("defaults"),
                       r.cfg.model["model"]["guidance_batch"] == 1)})


def requirements(variants: dict, workgroup_limits: dict, page_bytes: int = 0) -> dict:
    """What each flavor (a precision and its features: config.flavor) needs from a WebGPU
    adapter, from its variants' records.

    variants: {name: {"precision", "features" (optional), "largest_buffer_bytes",
    "param_bytes", "fetched_bytes", "activation_bytes"}};
    workgroup_limits: what the kernels were scheduled for (the target config; None on CPU
    targets). download_bytes is what a first visit of that flavor fetches: page_bytes (the
    page, the tokenizer, the scheduler tables) and each variant's library and parameters.
    gpu_bytes is the GPU memory of one image as the page holds it: every variant's params plus
    the largest planned activations (each component gives its own back after use).
    """
    needs = {}
    of = {n: flavor(v["precision"], tuple(v.get("features", ()))) for n, v in variants.items()}
    for name in dict.fromkeys(of.values()):
        mine = [v for n, v in variants.items() if of[n] == name]
        precision, *features = name.split("+")
        needs[name] = {
            "features": (["shader-f16"] if precision == "float16" else [])
            + [f for feat in features for f in WEBGPU_FEATURES[feat]],
            **({"subgroupSize": SUBGROUP_SIZE[features[0]]} if features else {}),
            "maxStorageBufferBindingSize": max(v["largest_buffer_bytes"] for v in mine),
            "maxBufferSize": max(v["largest_buffer_bytes"] for v in mine),
            "download_bytes": page_bytes + sum(v["fetched_bytes"] for v in mine),
            "gpu_bytes": sum(v["param_bytes"] for v in mine)
            + max(v["activation_bytes"] for v in mine),
            **{k: n for k, n in workgroup_limits.items() if n is not None},
        }
        for feat in features:   # a feature's kernels may stage more in workgroup memory
            have = needs[name].get("maxComputeWorkgroupStorageSize") or 0
            needs[name]["maxComputeWorkgroupStorageSize"] = max(have, WORKGROUP_STORAGE[feat])
    return needs


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    for name in COPIED:
        shutil.copyfile(inputs[name], outputs[name])
    files = listing([outputs[name] for name in COPIED])
    files.update(listing([p for n, p in inputs.items() if n.startswith("page/")]))
    variants = {}
    for v in cfg["variants"]:
        component, precision = split_variant(v)
        emitted = json.loads(inputs[f"{v}/manifest.json"].read_text())
        verified = json.loads(inputs[f"{v}/verify.json"].read_text())
        plan = json.loads(inputs[f"{v}/plan.json"].read_text())
        for rel, entry in emitted["files"].items():
            files[f"{v}/{rel}"] = entry
        for name in ("manifest.json", "verify.json"):
            files.update({f"{v}/{rel}": e for rel, e in listing([inputs[f"{v}/{name}"]]).items()})
        library = next(rel for rel in emitted["files"] if rel.endswith("." + cfg["library"]))
        param_bytes = sum(e["size"] for rel, e in emitted["files"].items()
                          if rel.startswith("params/") and rel.endswith(".bin"))
        owner = default_variant(v)   # an extra size's variant takes its params
        size = variant_size(v) or (cfg["image_size"],) * 2
        variants[v] = {
            "component": component, "precision": precision,
            "features": list(variant_features(v)),
            "flavor": flavor(precision, variant_features(v)),
            **({"size": list(size)} if component in SIZED else {}),
            "inputs": cfg["variant_inputs"][v],
            "library": f"{v}/{library}", "params": f"{owner}/params/tensor-cache.json",
            "manifest": f"{v}/manifest.json",
            **({"params_manifest": f"{owner}/manifest.json"} if owner != v else {}),
            "param_bytes": param_bytes,
            # what the page fetches for it: the library, tensor-cache.json and the shards
            "fetched_bytes": sum(e["size"] for rel, e in emitted["files"].items()
                                 if rel == library or rel.startswith("params/")),
            "activation_bytes": plan["planned"]["bytes"],
            "largest_buffer_bytes": plan["largest_buffer_bytes"],
            "verify": {"rel_l2": verified["rel_l2"], "max_rel_l2": verified["max_rel_l2"],
                       **({"skipped": verified["skipped"]} if "skipped" in verified else {})},
        }
    # the default size's: a larger size's variants record their own largest buffer and
    # activations, which the page checks when that size is chosen
    page_bytes = sum(files[n]["size"] for n in PAGE_READS if n in files)
    needs = requirements({n: v for n, v in variants.items() if variant_size(n) is None},
                         cfg["workgroup_limits"], page_bytes)
    index = {
        "model": cfg["model"], "target": cfg["target"],
        "image_size": cfg["image_size"], "latent_size": cfg["latent_size"],
        "sizes": cfg["sizes"],
        "vae_scaling_factor": cfg["vae_scaling_factor"],
        "inputs": cfg["inputs"], "contract": cfg["contract"],
        "tokenizer": "tokenizer.json", "tokenizer_config": "tokenizer_config.json",
        "scheduler": "scheduler_config.json", "schedules": "schedules.json",
        "variants": variants,
        "requirements": needs,
        "loras": [{**item, "sha256": sha256_file(inputs[f"lora{i}"])}
                  for i, item in enumerate(cfg["loras"])],
        "files": dict(sorted(files.items())),
    }
    outputs["index"].write_text(json.dumps(index, indent=1) + "\n")
