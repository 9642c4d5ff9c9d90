"""What each image size of a build costs: build seconds per stage, library size, memory, and
(merged from the H200 runs) the step time.

    python bench/sizes_cost.py --model sd-v1-5-sizes --target webgpu --variants unet-fp16-sm \\
        vae_decoder-fp16-sm [--workspace WS] [--h200 bench/results/h200/sizes]

Run in a workspace where the variants' stages are built for every size of the model
(`doit compile:unet-768x768-fp16-sm ... model=M target=T`; the default size's may be restored
from the cache). For each size and each variant (named at the default size; an extra size's is
`unet-768x768-fp16-sm`) it reads, without building anything:
  - the seconds each stage took, from its cache entry's provenance (the run that made the bytes
    in place: for the default size that can be an earlier session, with other load);
    `capture` and `import` are per component and size, shared by the precisions;
  - the compiled library's bytes (the wasm with its WGSL) and xz'd;
  - plan.json: the activations planned for one call and the largest buffer a kernel binds.
With --h200 DIR, the *.json there of the device run (summary.json's webgpu rows, and each
torch_unet_step.py result) add the step times. Writes bench/results/sizes_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import lzma
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("capture", "import", "passes", "schedule", "plan", "compile")


def stage_records(ws: Path, model: str, target: str, variants: list[str]) -> dict:
    """{variant at each size: {"stages": {stage: seconds}, "library": path, "plan": path}}."""
    code = f"""
import json
from stages.engine import config, dag, keys, runner
from stages.engine.store import Store, digest_path
cfg = config.load({model!r}, {target!r})
out = {{}}
for size in cfg.sizes:
    for v in {variants!r}:
        base, precision = config.split_variant(v)
        name = config.variant_name(base, precision, config.variant_features(v),
                                   None if size == cfg.sizes[0] else size)
        rec = {{"size": list(size), "stages": {{}}}}
        for stage in {STAGES!r}:
            s = dag.spec(cfg, stage, name)
            key = keys.stage_key(runner.static_key(s), {{n: digest_path(p) for n, p in s.inputs.items()}})
            entry = Store(runner.CACHE).get_action(key)
            rec["stages"][s.task] = entry and entry["provenance"].get("seconds")
        rec["library"] = str(dag.spec(cfg, "compile", name).outputs["library"])
        rec["plan"] = str(dag.spec(cfg, "plan", name).outputs["plan"])
        out[name] = rec
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: reading the stages failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def step_times(h200: Path | None) -> dict:
    """{"webgpu <variant>": ms, "torch <size> <kind>": ms} from the device runs' files."""
    found = {}
    if h200 is None:
        return found
    for path in sorted(h200.glob("*.json")):
        data = json.loads(path.read_text())
        for row in data.get("rows", []):    # summary.json: "webgpu <variant>", "torch ..."
            if row.get("ms") is not None and row["variant"].startswith("webgpu"):
                found[row["variant"]] = round(row["ms"], 2)
        if "results" in data and "inputs" in data:   # torch_unet_step.json
            h, w = data["inputs"]["sample"][2:]
            for kind, r in data["results"].items():
                if r.get("median_ms") is not None:
                    found[f"torch {w * 8}x{h * 8} {kind}"] = round(r["median_ms"], 2)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sd-v1-5-sizes")
    ap.add_argument("--target", default="webgpu")
    ap.add_argument("--variants", nargs="+", default=["unet-fp16-sm", "vae_decoder-fp16-sm"])
    ap.add_argument("--workspace", type=Path, default=REPO)
    ap.add_argument("--h200", type=Path, default=None)
    args = ap.parse_args()
    records = stage_records(args.workspace, args.model, args.target, args.variants)
    for name, rec in records.items():
        library = Path(rec.pop("library"))
        plan = json.loads(Path(rec.pop("plan")).read_text())
        data = library.read_bytes()
        rec["library_bytes"] = len(data)
        rec["library_xz_bytes"] = len(lzma.compress(data, preset=6))
        rec["activation_bytes"] = plan["planned"]["bytes"]
        rec["largest_buffer_bytes"] = plan["largest_buffer_bytes"]
        rec["build_seconds"] = round(sum(s for s in rec["stages"].values() if s), 1)
        print(f"{name}: {rec['build_seconds']} s of stages, wasm {len(data) / 1e6:.2f} MB, "
              f"activations {rec['activation_bytes'] / 2**20:.0f} MiB, largest buffer "
              f"{rec['largest_buffer_bytes'] / 2**20:.0f} MiB")
    result = {"model": args.model, "target": args.target, "variants": records,
              "step_ms": step_times(args.h200),
              "notes": ["stage seconds: the cache entries' provenance (the run that built "
                        "them on this 2-core machine, other builds beside them)",
                        "capture and import are shared by every precision of a size; a size "
                        "adds the other stages once per variant the target has (webgpu: "
                        "float32, float16, float16 on the matrix units)"]}
    out = REPO / "bench" / "results" / f"sizes_{args.model.removesuffix('-sizes')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
