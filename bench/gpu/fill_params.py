"""On the GPU machine: write a built model directory's parameter shards from the model's seed.

    python3 bench/gpu/fill_params.py DIST_DIR [--model sd-v1-5]

DIST_DIR is `dist/<model>/webgpu/` carried without its shards (*.bin: 5 GB for SD v1.5): the
manifests, each variant's library and params/tensor-cache.json. Each component's weights are
drawn here from the model config's seed with the code the weights stage runs
(components.init_random), and every record of every variant's tensor cache is written at its
byteOffset in its shard, in its dtype; then the sha256 and size of each shard are put back into
the variant's manifest.json and the model's manifest.json, which the page's loader checks every
byte against. Torch draws the same values on every machine only for the same torch version and
CPU, hence the rehash rather than a comparison. Prints one line per variant.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tvm_unet_step import export_name  # noqa: E402  (the state-dict key -> tensor-cache name)


def fill(variant_dir: Path, state: dict) -> dict[str, dict]:
    """Write the variant's shards; return {path relative to the variant: {sha256, size}}."""
    import numpy as np

    from stages.runtime import quantize

    cache = json.loads((variant_dir / "params" / "tensor-cache.json").read_text())
    dtypes = {r["name"]: r["dtype"] for shard in cache["records"] for r in shard["records"]}

    def value(name):
        """A param's values; an int8 weight's bytes or scales (stages/runtime/quantize.py)."""
        src, part = quantize.source(name)
        if src not in state:
            raise KeyError(f"{variant_dir.name}: no weight {src} in the drawn model")
        if part is None:
            return state[src]
        packed, scales = quantize.quantize(state[src], dtypes[src + quantize.SCALE_SUFFIX])
        return packed if part == "packed" else scales

    written = {}
    for shard in cache["records"]:
        buf = bytearray(shard["nbytes"])
        for r in shard["records"]:
            data = np.ascontiguousarray(value(r["name"]).astype(r["dtype"])).tobytes()
            if len(data) != r["nbytes"]:
                raise ValueError(f"{variant_dir.name}: {r['name']} is {len(data)} bytes, "
                                 f"the cache says {r['nbytes']}")
            buf[r["byteOffset"]:r["byteOffset"] + len(data)] = data
        rel = f"params/{shard['dataPath']}"
        (variant_dir / rel).write_bytes(buf)
        written[rel] = {"sha256": hashlib.sha256(buf).hexdigest(), "size": len(buf)}
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dist", type=Path)
    ap.add_argument("--model", default="sd-v1-5")
    args = ap.parse_args()

    from stages.runtime import components
    from stages.engine import config

    cfg = config.load(args.model, "webgpu")
    index_path = args.dist / "manifest.json"
    index = json.loads(index_path.read_text())
    drawn: dict[str, dict] = {}
    for name, variant in index["variants"].items():
        start = time.perf_counter()
        component = variant["component"]
        if component not in drawn:
            module = components.wrapper(component, components.init_random(
                component, cfg.arch(component), cfg.model["model"]["seed"]))
            drawn[component] = {export_name(k): v.detach().numpy()
                                for k, v in module.state_dict().items()}
        vdir = args.dist / name
        written = fill(vdir, drawn[component])
        own_path = vdir / "manifest.json"
        own = json.loads(own_path.read_text())
        own["files"].update(written)
        own_path.write_text(json.dumps(own, indent=1) + "\n")
        index["files"].update({f"{name}/{rel}": e for rel, e in written.items()})
        own_entry = {"sha256": hashlib.sha256(own_path.read_bytes()).hexdigest(),
                     "size": own_path.stat().st_size}
        index["files"][f"{name}/manifest.json"] = own_entry
        print(f"fill_params: {name}: {len(written)} shards, "
              f"{sum(e['size'] for e in written.values()) / 2**20:.0f} MiB in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    index_path.write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
