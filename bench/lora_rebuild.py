"""What a LoRA costs to build: a new LoRA, a new scale, a second LoRA, against a cold build.

    .venv/bin/python bench/lora_rebuild.py --model sd-v1-5 --target llvm --workspace /tmp/build

In a workspace whose model is built up to emit (or is brought there first), makes LoRA files
for the model from its own weight names (tests/lora_files.py: the diffusers/PEFT layout on the
UNet's attention and the text encoder, and kohya's with the UNet's 3x3 convolutions), then times
`doit emit:<component>... lora=...` for each change. The cold build is the sum of the seconds
each stage of those components took when it was built (the cache's provenance records them),
from weights to emit. Writes bench/results/lora_rebuild_<model>_<target>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from lora_files import kohya_lora, peft_lora  # noqa: E402  (the tests' LoRA files)

COMPONENT_STAGES = ("weights", "capture", "import", "passes", "schedule", "plan", "compile",
                    "emit")


def timed(ws: Path, args, tasks: list[str], lora: str | None) -> dict:
    cmd = [sys.executable, "-m", "doit", *tasks, f"model={args.model}", f"target={args.target}",
           *([f"lora={lora}"] if lora else [])]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ws, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {ws}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    report = json.loads((ws / "dist" / args.model / args.target / "build-report.json").read_text())
    return {"lora": lora and lora.replace(str(ws) + "/", ""), "seconds": round(seconds, 1),
            "built": sorted(report["tasks"]["built"]),
            "restored": sorted(report["tasks"]["restored"])}


def cold_seconds(ws: Path, args, components: list[str]) -> dict:
    """Each stage's build seconds from its cache entry (the provenance of the bytes in place)."""
    code = f"""
import json, sys
from stages.engine import config, dag, keys, runner
from stages.engine.store import Store, digest_path
cfg = config.load({args.model!r}, {args.target!r})
out = {{}}
for c in {components!r}:
    for stage in {COMPONENT_STAGES!r}:
        s = dag.spec(cfg, stage, c)
        key = keys.stage_key(runner.static_key(s), {{n: digest_path(p) for n, p in s.inputs.items()}})
        entry = Store(runner.CACHE).get_action(key)
        out[f"{{stage}}:{{c}}"] = entry and entry["provenance"].get("seconds")
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--target", default="llvm")
    ap.add_argument("--components", default="text_encoder,unet")
    ap.add_argument("--workspace", type=Path, required=True)
    args = ap.parse_args()
    ws = args.workspace.resolve()
    components = args.components.split(",")
    tasks = [f"emit:{c}" for c in components]
    runs = {"without LoRA (what was left to build)": timed(ws, args, tasks, None)}
    files = ws / "build" / "bench-loras"
    files.mkdir(parents=True, exist_ok=True)
    build = ws / "build"
    a = peft_lora(files / "a_peft.safetensors", build, args.model, rank=16, alpha=16.0, seed=0,
                  std=0.01)
    b = kohya_lora(files / "b_kohya.safetensors", build, args.model, rank=8, alpha=4.0, seed=1,
                   std=0.01)
    for name, lora in (("a new LoRA", f"{a}:0.8"), ("its scale", f"{a}:0.5"),
                       ("a second LoRA", f"{a}:0.8,{b}:0.6"), ("back to none", None)):
        runs[name] = timed(ws, args, tasks, lora)
        print(f"{name}: {runs[name]['seconds']} s, built {runs[name]['built']}", flush=True)
    cold = cold_seconds(ws, args, components)
    result = {"model": args.model, "target": args.target, "components": components,
              "lora_files_mb": {p.name: round(p.stat().st_size / 2**20, 1) for p in (a, b)},
              "runs": runs, "cold_stage_seconds": cold,
              "cold_total_seconds": round(sum(v for v in cold.values() if v), 1)}
    out = ROOT / "bench" / "results" / f"lora_rebuild_{args.model}_{args.target}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"cold build of {components} to emit: {result['cold_total_seconds']} s; wrote {out}")


if __name__ == "__main__":
    main()
