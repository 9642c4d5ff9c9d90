"""The web toolchain: TVM's wasm runtime objects, built with emscripten from the wheel's
sources plus the support headers in support/ that the wheel does not ship (written by us)."""

from __future__ import annotations

import shutil
from pathlib import Path

SUPPORT = Path(__file__).resolve().parent / "support"


def emcc_version() -> str:
    """emscripten's version, read from its install (no process started): part of the keys."""
    emcc = shutil.which("emcc")
    if emcc is None:
        return "absent"
    home = Path(emcc).resolve().parent
    version = home / "emscripten-version.txt"
    return version.read_text().strip().strip('"') if version.is_file() else "unknown"


def header_files() -> dict[str, Path]:
    """Our support headers by relative path: inputs of the toolchain stage."""
    return {str(p.relative_to(SUPPORT)): p for p in sorted(SUPPORT.rglob("*.h"))}
