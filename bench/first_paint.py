"""Does a smaller app.js make the page's first visit faster? First paint and "ready" per bundle.

The page of one built model (default: dist/shapes/webgpu) is served with the page files of each
commit compared (web/index.html and web/src of that commit, bundled with this checkout's
esbuild flags: app.js, and the worker script the commit has), and bench/first_paint.mjs opens
each in headless Chromium (lavapipe) in fresh contexts, interleaved. "ready" is app.js's
startup: manifest.json and schedules.json read, the GPU opened and checked, the form filled.
Writes bench/results/page_first_paint.json.

    .venv/bin/python bench/first_paint.py [--runs 7] [--model-dir dist/shapes/webgpu] \
        [--rev one-bundle=22d425d --rev tokenizer-worker=2f4b398 --rev model-worker=HEAD]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stages.bundle import ESBUILD_FLAGS, esbuild  # noqa: E402

# the commits of the page's three layouts (the one bundle, the tokenizer's worker, the
# model's worker)
DEFAULT_REVS = {"one-bundle": "22d425d", "tokenizer-worker": "2f4b398", "model-worker": "HEAD"}
WORKERS = ("tokenizer_worker.js", "model_worker.js")


def page_of(rev: str, into: Path) -> dict[str, int]:
    """web/ of `rev` bundled into `into`; returns the bytes of each page file."""
    tar = subprocess.run(["git", "archive", rev, "web/index.html", "web/src"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    src = into / "src"
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(src, filter="data")
    web = src / "web"
    (web / "node_modules").symlink_to(ROOT / "web" / "node_modules")
    entries = {"app.js": ("src/app.js", "esm")}
    entries.update({w: (f"src/{w}", "iife") for w in WORKERS if (web / "src" / w).is_file()})
    page = into / "page"
    page.mkdir()
    for name, (entry, fmt) in entries.items():
        subprocess.run([str(esbuild(ROOT / "web")), entry, *ESBUILD_FLAGS, f"--format={fmt}",
                        f"--outfile={page / name}"], cwd=web, check=True, capture_output=True)
    (page / "index.html").write_bytes((web / "index.html").read_bytes())
    return {name: (page / name).stat().st_size for name in ("index.html", *entries)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--model-dir", type=Path, default=ROOT / "dist" / "shapes" / "webgpu")
    ap.add_argument("--rev", action="append", default=[], metavar="NAME=REV")
    args = ap.parse_args()
    revs = dict(r.split("=", 1) for r in args.rev) or DEFAULT_REVS
    model = args.model_dir.resolve()
    if not (model / "manifest.json").is_file():
        sys.exit(f"{model}: no manifest.json; build the page first (doit build)")
    with tempfile.TemporaryDirectory() as tmp:
        pages, sizes = {}, {}
        for name, rev in revs.items():
            work = Path(tmp) / name
            work.mkdir()
            sizes[name] = page_of(rev, work)
            # the model's files beside this commit's page files
            for entry in model.iterdir():
                if entry.name not in ("index.html", "app.js", *WORKERS):
                    os.symlink(entry, work / "page" / entry.name)
            pages[name] = str(work / "page")
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"runs": args.runs, "pages": pages}))
        proc = subprocess.run(["node", str(ROOT / "bench" / "first_paint.mjs"), str(job)],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"first_paint.mjs failed:\n{proc.stderr[-3000:]}")
        runs = json.loads(proc.stdout)
    rows = {}
    print(f"{'page':<18} {'app.js KB':>9} {'FCP ms':>7} {'ready ms':>9} {'longest task ms':>16}")
    for name, measured in runs.items():
        rows[name] = {"rev": revs[name], "bytes": sizes[name],
                      "fcp_ms": statistics.median(r["fcpMs"] for r in measured),
                      "ready_ms": statistics.median(r["readyMs"] for r in measured),
                      "longest_task_ms": max((max(r["longTasks"], default=0) for r in measured)),
                      "runs": measured}
        r = rows[name]
        print(f"{name:<18} {sizes[name]['app.js'] / 1e3:9.0f} {r['fcp_ms']:7.0f} "
              f"{r['ready_ms']:9.0f} {r['longest_task_ms']:16.0f}")
    out = ROOT / "bench" / "results" / "page_first_paint.json"
    out.write_text(json.dumps({"model_dir": str(args.model_dir), "route": "lavapipe",
                               "runs": args.runs, "pages": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
