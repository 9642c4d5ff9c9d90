"""bundle: the page (web/) as the files a browser loads, beside the model in dist/.

esbuild (pinned in web/package-lock.json) bundles web/src/app.js and what it imports (the form,
the drawing, the worker's messages) into one ES module, app.js, and the model's worker
(web/src/model_worker.js with the tvmjs runtime and the tokenizer's wasm build, 4.9 MB) into a
classic worker script, model_worker.js: the page shows after 26 KB of script, and everything
that runs long (wasm compiles, shard hashes, the GPU calls) runs off its main thread. index.html
is copied. Nothing is fetched from a CDN: the page loads only what `doit serve` serves from
dist/<model>/<target>/. The page itself reads manifest.json at run time, so the
bundle does not depend on the model and one build of it serves every model.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from stages.engine.rule import Rule, Spec

# NOTE: the Node-only branches of the tokenizer package (url, module) and of the tvmjs runtime
# (fs, path, perf_hooks, ws) name these built-ins; they never run in a browser, and esbuild
# must leave them alone.
NODE_ONLY = ("url", "module", "fs", "path", "perf_hooks", "ws")
ESBUILD_FLAGS = ("--bundle", "--platform=browser", "--target=es2022",
                 "--minify", "--legal-comments=none", *(f"--external:{m}" for m in NODE_ONLY))
# output -> (entry point, module format): the page's module, and its worker as a classic
# script (module workers cannot run the tokenizer package's Emscripten loader everywhere)
ENTRIES = {"app.js": ("src/app.js", "esm"), "model_worker.js": ("src/model_worker.js", "iife")}


def esbuild(web: Path) -> Path:
    exe = web / "node_modules" / "esbuild" / "bin" / "esbuild"
    if not exe.is_file():
        raise RuntimeError("bundle: web/node_modules/esbuild is missing; fix: (cd web && npm ci)")
    return exe


def spec(r: Rule) -> Spec:
    """web/ (the page's sources and the lock file of its packages) in; the bundle out."""
    web = r.root / "web"
    src = {f"src/{p.name}": p for p in sorted((web / "src").glob("*.js"))}
    return r.spec({"index.html": web / "index.html", **src,
                   "package-lock.json": web / "package-lock.json"},
                  {"index.html": r.top / "index.html",
                   **{name: r.top / name for name in ENTRIES}}, {})


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    web = inputs["index.html"].parent
    for name, (entry, fmt) in ENTRIES.items():
        proc = subprocess.run([str(esbuild(web)), str(inputs[entry]), *ESBUILD_FLAGS,
                               f"--format={fmt}", f"--outfile={outputs[name]}"],
                              cwd=web, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"bundle: esbuild failed on {entry}: {proc.stderr.strip()[-3000:]}")
    shutil.copyfile(inputs["index.html"], outputs["index.html"])
