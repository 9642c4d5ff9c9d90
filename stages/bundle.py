"""bundle: the page (web/) as the files a browser loads, beside the model in dist/.

esbuild (pinned in web/package-lock.json) bundles web/src/app.js and everything it imports
(the tvmjs runtime, the tokenizer's wasm build, our modules) into one ES module, app.js;
index.html is copied. Nothing is fetched from a CDN: the page loads only what `doit serve`
serves from dist/<model>/<target>/. The page itself reads manifest.json at run time, so the
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
ESBUILD_FLAGS = ("--bundle", "--format=esm", "--platform=browser", "--target=es2022",
                 "--minify", "--legal-comments=none", *(f"--external:{m}" for m in NODE_ONLY))


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
                  {"index.html": r.top / "index.html", "app.js": r.top / "app.js"}, {})


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    web = inputs["index.html"].parent
    proc = subprocess.run([str(esbuild(web)), str(inputs["src/app.js"]), *ESBUILD_FLAGS,
                           f"--outfile={outputs['app.js']}"],
                          cwd=web, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bundle: esbuild failed: {proc.stderr.strip()[-3000:]}")
    shutil.copyfile(inputs["index.html"], outputs["index.html"])
