"""What a built model weighs: shard bytes per component and precision, planned vs unplanned
activation bytes, the largest buffer, and the GPU memory of one image.

Reads the build's own records (each variant's plan.json and emit manifest.json), so it works
on a build stopped after `emit` (a full-size webgpu build is not verified on a CPU-only
machine). GPU memory for an image at the model's size is, per precision, every component's
shard bytes (the page keeps all three loaded) plus the largest component's planned activations:
the page gives each component's activations back once it is done for the image
(web/src/model.js releaseActivations). The sum over all three is recorded too (what the page
held before it did that). `--measured FILE...` adds each variant's peak GPU memory measured on a
device (webgpu_unet_step.mjs JSON: tvmjs runtime stats) next to its planned figure.

    .venv/bin/python bench/model_size.py --model sd-v1-5 --target webgpu

Writes bench/results/model_size_<model>_<target>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.engine import config, dag  # noqa: E402
from stages.package import requirements  # noqa: E402

# WebGPU's guaranteed limits: what every adapter grants without asking
WEBGPU_DEFAULTS = {"maxStorageBufferBindingSize": 134217728, "maxBufferSize": 268435456,
                   "maxComputeInvocationsPerWorkgroup": 256,
                   "maxComputeWorkgroupStorageSize": 16384}


def variant_size(cfg, variant: str) -> dict:
    plan = json.loads(dag.spec(cfg, "plan", variant).outputs["plan"].read_text())
    emitted = json.loads(dag.spec(cfg, "emit", variant).outputs["manifest"].read_text())
    files = emitted["files"]
    return {
        "shard_bytes": sum(e["size"] for rel, e in files.items()
                           if rel.startswith("params/") and rel.endswith(".bin")),
        "library_bytes": sum(e["size"] for rel, e in files.items()
                             if rel.endswith((".wasm", ".so"))),
        "unplanned_activation_bytes": plan["unplanned"]["bytes"],
        "planned_activation_bytes": plan["planned"]["bytes"],
        "planned_fraction": plan["planned_fraction"],
        "largest_buffer_bytes": plan["largest_buffer_bytes"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--target", default="webgpu")
    ap.add_argument("--measured", nargs="*", default=[],
                    help="webgpu_unet_step.mjs result files of this model's variants")
    args = ap.parse_args()
    cfg = config.load(args.model, args.target)
    variants = {v: variant_size(cfg, v) for v in cfg.variants}
    for path in args.measured:
        run = json.loads(Path(path).read_text())
        name = Path(run["wasm"]).stem   # the variant: unet-fp16.wasm
        stats = re.search(r"peak-memory=(\d+) MB", run.get("runtime_stats") or "")
        if name in variants and stats:
            variants[name]["measured_peak_bytes"] = int(stats.group(1)) << 20
            variants[name]["measured_on"] = run.get("adapter", {}).get("device")
    totals = {}
    flavor_of = {v: config.flavor(config.split_variant(v)[1], config.variant_features(v))
                 for v in cfg.variants}
    for precision in dict.fromkeys(flavor_of.values()):   # a flavor: config.flavor
        mine = [variants[v] for v in cfg.variants if flavor_of[v] == precision]
        params = sum(v["shard_bytes"] for v in mine)
        activations = max(v["planned_activation_bytes"] for v in mine)
        totals[precision] = {"download_bytes": params + sum(v["library_bytes"] for v in mine),
                             "shard_bytes": params, "planned_activation_bytes": activations,
                             "gpu_bytes": params + activations,
                             "gpu_bytes_all_kept": params + sum(v["planned_activation_bytes"]
                                                                 for v in mine),
                             "largest_buffer_bytes": max(v["largest_buffer_bytes"] for v in mine)}
    # what package writes into manifest.json's "requirements" (the same function), and whether
    # each precision fits WebGPU's defaults
    spec = dag.spec(cfg, "package")
    needs = requirements({v: {"precision": config.split_variant(v)[1],
                              "features": config.variant_features(v),
                              "largest_buffer_bytes": s["largest_buffer_bytes"],
                              "param_bytes": s["shard_bytes"],
                              "activation_bytes": s["planned_activation_bytes"]}
                          for v, s in variants.items()},
                         spec.config["workgroup_limits"])
    for p, need in needs.items():
        need["above_webgpu_defaults"] = sorted(k for k, n in WEBGPU_DEFAULTS.items()
                                               if need.get(k, 0) > n)
    result = {"model": args.model, "target": args.target,
              "image_size": cfg.model["model"]["image_size"], "variants": variants,
              "totals": totals, "requirements": needs}
    out = ROOT / "bench" / "results" / f"model_size_{args.model}_{args.target}.json"
    if out.exists():   # notes are written by hand next to the figures: keep them
        result["notes"] = json.loads(out.read_text()).get("notes", [])
    out.write_text(json.dumps(result, indent=1) + "\n")
    for v, s in variants.items():
        print(f"{v:<20} shards {s['shard_bytes'] / 1e6:9.1f} MB  activations "
              f"{s['unplanned_activation_bytes'] / 1e9:6.2f} -> "
              f"{s['planned_activation_bytes'] / 1e9:6.2f} GB ({s['planned_fraction']:.1%})")
    for p, t in totals.items():
        print(f"{p}: download {t['download_bytes'] / 1e9:.2f} GB, GPU memory for one "
              f"{result['image_size']}x{result['image_size']} image {t['gpu_bytes'] / 1e9:.2f} GB")
    for p, need in needs.items():
        print(f"{p}: needs maxStorageBufferBindingSize {need['maxStorageBufferBindingSize']}, "
              f"above WebGPU's defaults: {need['above_webgpu_defaults'] or 'nothing'}")
    print(f"-> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
