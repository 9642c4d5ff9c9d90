"""What a built model weighs: shard bytes per component and precision, planned vs unplanned
activation bytes, the largest buffer, and the GPU memory of one image.

Reads the build's own records (each variant's plan.json and emit manifest.json), so it works
on a build stopped after `emit` (a full-size webgpu build is not verified on a CPU-only
machine). GPU memory for an image at the model's size is, per precision, the sum over the
three components of shard bytes + planned activation bytes: the page keeps all three loaded.

    .venv/bin/python bench/model_size.py --model sd-v1-5 --target webgpu

Writes bench/results/model_size_<model>_<target>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages import config, dag  # noqa: E402


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
    args = ap.parse_args()
    cfg = config.load(args.model, args.target)
    variants = {v: variant_size(cfg, v) for v in cfg.variants}
    totals = {}
    for precision in cfg.target["target"]["precisions"]:
        mine = [variants[v] for v in cfg.variants if config.split_variant(v)[1] == precision]
        params = sum(v["shard_bytes"] for v in mine)
        activations = sum(v["planned_activation_bytes"] for v in mine)
        totals[precision] = {"download_bytes": params + sum(v["library_bytes"] for v in mine),
                             "shard_bytes": params, "planned_activation_bytes": activations,
                             "gpu_bytes": params + activations}
    result = {"model": args.model, "target": args.target,
              "image_size": cfg.model["model"]["image_size"], "variants": variants,
              "totals": totals}
    out = ROOT / "bench" / "results" / f"model_size_{args.model}_{args.target}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    for v, s in variants.items():
        print(f"{v:<20} shards {s['shard_bytes'] / 1e6:9.1f} MB  activations "
              f"{s['unplanned_activation_bytes'] / 1e9:6.2f} -> "
              f"{s['planned_activation_bytes'] / 1e9:6.2f} GB ({s['planned_fraction']:.1%})")
    for p, t in totals.items():
        print(f"{p}: download {t['download_bytes'] / 1e9:.2f} GB, GPU memory for one "
              f"{result['image_size']}x{result['image_size']} image {t['gpu_bytes'] / 1e9:.2f} GB")
    print(f"-> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
