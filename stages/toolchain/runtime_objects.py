"""Compile the TVM web runtime's C++ translation units into wasm object files.

The installed TVM wheel ships the web runtime sources (``tvm/web/emcc/*.cc``),
the runtime sources they ``#include`` (``tvm/src/runtime``), the public headers
and the tvm-ffi sources (package ``tvm_ffi``), but not a handful of support
headers.  Our own implementations of those live next to this file under
``support/`` (mirroring their include paths).

Because several sources reach the missing headers through relative includes
(``#include "../support/bytes_io.h"`` from ``src/runtime/tensor.cc``), we never
build inside site-packages: :func:`build` assembles a scratch tree with the
layout ``web/Makefile`` expects (``TVM_ROOT`` = the tree root)::

    <tree>/src          <- tvm/src + support/src
    <tree>/include      <- tvm/include + support/include
    <tree>/web          <- tvm/web
    <tree>/3rdparty/tvm-ffi/{include,src,3rdparty/dlpack/include} <- tvm_ffi/...
    <tree>/3rdparty/compiler-rt <- support/3rdparty/compiler-rt (+ wheel's, if any)

(real directories, files symlinked from the wheel / copied from support/)

and runs ``emcc -c`` with the Makefile's include and compile flags.

Run it as the `toolchain` stage: ``doit toolchain target=webgpu``.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from stages.toolchain import SUPPORT as SUPPORT_DIR
from stages.engine.rule import Rule, Spec

# Translation units of the web runtime (``web/Makefile``), in link order.
UNITS = ("wasm_runtime", "tvmjs_support", "webgpu_runtime")

# ``EMCC_CFLAGS`` of web/Makefile minus the include flags (added per tree).
COMPILE_FLAGS = ("-O3", "-std=c++17", "-Wno-ignored-attributes")

def _package_dir(name: str) -> pathlib.Path:
    """Directory of an installed package, located without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"package {name!r} is not installed")
    return pathlib.Path(spec.origin).resolve().parent


def _find_dlpack_include(ffi_dir: pathlib.Path) -> pathlib.Path:
    for cand in (ffi_dir / "3rdparty" / "dlpack" / "include", ffi_dir / "include"):
        if (cand / "dlpack" / "dlpack.h").is_file():
            return cand
    raise RuntimeError(f"dlpack/dlpack.h not found under {ffi_dir}")


def _overlay(dst: pathlib.Path, base: pathlib.Path | None, extra: pathlib.Path | None = None) -> None:
    """Mirror ``base`` into ``dst`` and lay ``extra`` over it.

    Directories are always created for real (never symlinked) so that ``..`` in
    relative includes walks the scratch tree rather than the wheel; files are
    symlinked from ``base`` and copied from ``extra`` (``extra`` wins).
    """
    dst.mkdir(parents=True, exist_ok=True)
    base_entries = {p.name: p for p in base.iterdir()} if base and base.is_dir() else {}
    extra_entries = {p.name: p for p in extra.iterdir()} if extra and extra.is_dir() else {}
    for name in sorted(set(base_entries) | set(extra_entries)):
        if name == "__pycache__":
            continue
        b, e = base_entries.get(name), extra_entries.get(name)
        target = dst / name
        if (e is not None and e.is_dir()) or (e is None and b.is_dir()):
            _overlay(target, b if b is not None and b.is_dir() else None,
                     e if e is not None and e.is_dir() else None)
        elif e is not None:
            shutil.copy2(e, target)
        else:
            target.symlink_to(b)


def assemble_tree(root: pathlib.Path) -> pathlib.Path:
    """Lay out a TVM source tree under ``root`` for the web build; return ``root``."""
    tvm_dir = _package_dir("tvm")
    ffi_dir = _package_dir("tvm_ffi")
    for needed in (tvm_dir / "web" / "emcc", tvm_dir / "src" / "runtime", tvm_dir / "include",
                   ffi_dir / "src" / "ffi", ffi_dir / "include" / "tvm" / "ffi"):
        if not needed.is_dir():
            raise RuntimeError(f"TVM wheel lacks {needed}")

    root.mkdir(parents=True, exist_ok=True)
    # Relative includes ("../support/x.h", "../../src/support/x.h") resolve against
    # the *path* of the including file, so every directory is mirrored for real.
    _overlay(root / "src", tvm_dir / "src", SUPPORT_DIR / "src")
    _overlay(root / "include", tvm_dir / "include", SUPPORT_DIR / "include")
    _overlay(root / "web", tvm_dir / "web")
    # Only the 3rdparty pieces named by web/Makefile's INCLUDE_FLAGS.
    third = root / "3rdparty"
    _overlay(third / "compiler-rt", tvm_dir / "3rdparty" / "compiler-rt",
             SUPPORT_DIR / "3rdparty" / "compiler-rt")
    ffi_root = third / "tvm-ffi"
    _overlay(ffi_root / "include", ffi_dir / "include")
    _overlay(ffi_root / "src", ffi_dir / "src")
    _overlay(ffi_root / "3rdparty" / "dlpack" / "include", _find_dlpack_include(ffi_dir))
    return root


def include_flags(root: pathlib.Path) -> list[str]:
    """``INCLUDE_FLAGS`` of web/Makefile for a tree assembled at ``root``."""
    return [
        f"-I{root}",
        f"-I{root / 'include'}",
        f"-I{root / '3rdparty' / 'tvm-ffi' / 'include'}",
        f"-I{root / '3rdparty' / 'tvm-ffi' / '3rdparty' / 'dlpack' / 'include'}",
        f"-I{root / '3rdparty' / 'compiler-rt'}",
    ]


def emcc_env() -> dict[str, str]:
    env = dict(os.environ)
    # Debian's emscripten needs its node modules on NODE_PATH.
    if pathlib.Path("/usr/share/nodejs").is_dir():
        paths = [p for p in env.get("NODE_PATH", "").split(os.pathsep) if p]
        if "/usr/share/nodejs" not in paths:
            env["NODE_PATH"] = os.pathsep.join(paths + ["/usr/share/nodejs"])
    return env


def compile_command(root: pathlib.Path, unit: str, out: pathlib.Path, emcc: str = "emcc") -> list[str]:
    src = root / "web" / "emcc" / f"{unit}.cc"
    return [emcc, *include_flags(root), *COMPILE_FLAGS, "-c", str(src), "-o", str(out)]


def build(out_dir: pathlib.Path, jobs: int = 2, emcc: str = "emcc") -> dict[str, pathlib.Path]:
    """Compile the web runtime units into ``out_dir/<unit>.o``; return unit -> path."""
    out_dir = pathlib.Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    env = emcc_env()
    with tempfile.TemporaryDirectory(prefix="tvmweb-") as tmp:
        root = assemble_tree(pathlib.Path(tmp) / "tvm")

        def compile_unit(unit: str) -> tuple[str, pathlib.Path, float]:
            obj = out_dir / f"{unit}.o"
            cmd = compile_command(root, unit, obj, emcc)
            start = time.monotonic()
            proc = subprocess.run(cmd, cwd=root / "web", env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"emcc failed for {unit} (rc={proc.returncode}):\n{' '.join(cmd)}\n"
                    f"{proc.stderr[-20000:]}")
            return unit, obj, time.monotonic() - start

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(compile_unit, UNITS))
    for unit, _, secs in results:
        print(f"[runtime_objects] {unit}.o compiled in {secs:.1f}s", file=sys.stderr)
    return {unit: obj for unit, obj, _ in results}


RUNTIME_OBJECTS = ("wasm_runtime.o", "tvmjs_support.o", "webgpu_runtime.o")


def spec(r: Rule) -> Spec:
    """Our support headers in, the three runtime objects out (wasm targets only)."""
    from stages import toolchain

    # NOTE: independent of the model, so every model shares one build through cache/
    return r.spec(toolchain.header_files(),
                  {name: r.build / "_toolchain" / r.cfg.target_name / name
                   for name in RUNTIME_OBJECTS},
                  {"emcc": toolchain.emcc_version()})


def run(inputs: dict[str, pathlib.Path], outputs: dict[str, pathlib.Path], cfg: dict) -> None:
    """The toolchain stage: the three runtime objects into the stage's outputs.

    NOTE: `inputs` are our support headers; build() reads them from SUPPORT_DIR, which is
    where the inputs live, so the key and the compile see the same bytes.
    """
    if shutil.which("emcc") is None:
        raise RuntimeError("toolchain: emcc not found; fix: apt-get install emscripten")
    with tempfile.TemporaryDirectory() as tmp:
        objects = build(pathlib.Path(tmp))
        for unit, path in objects.items():
            shutil.copyfile(path, outputs[f"{unit}.o"])

