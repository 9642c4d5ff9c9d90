"""Stage keys: one sha256 over everything that can change a stage's output.

The ingredients, all listed in `stage_key`: a schema version, the stage name, the sha256 of every
input file, the source of the stage module and of every repo module it imports (found by reading
the import statements, so nothing is imported here), extra source modules named by the stage
(the compiler passes a component goes through), the stage's slice of the config, and the
versions of the tools that shape the output, read with importlib.metadata.
No absolute paths, mtimes or host names go in.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
from functools import cache
from pathlib import Path

from stages.engine.config import ROOT


# Bump when the store layout or the meaning of an entry changes.
SCHEMA_VERSION = 2

# Tools whose versions change generated artifacts: they are part of every key.
TOOLS = ("apache-tvm", "apache-tvm-ffi", "torch", "diffusers", "transformers", "tokenizers",
         "safetensors", "numpy")


@cache
def tool_versions() -> dict[str, str]:
    versions = {}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def module_path(name: str) -> Path | None:
    """The file of a repo module `stages.x.y`, or None when it is not part of the repo."""
    parts = name.split(".")
    if parts[0] != "stages":
        return None
    base = ROOT.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(path: Path, name: str) -> set[str]:
    """Repo module names imported anywhere in a file (top level or inside functions)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    # every enclosing package's __init__ runs on import too
    closure = set()
    for mod in found:
        parts = mod.split(".")
        closure.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in closure if module_path(m) is not None}


@cache
def source_closure(*names: str) -> tuple[tuple[str, str], ...]:
    """(relative path, sha256) of each repo module reachable from `names` by imports."""
    seen: dict[str, Path] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        path = module_path(name)
        if path is None:
            raise ValueError(f"{name} is not a module of this repo")
        if name in seen:
            continue
        seen[name] = path
        todo.extend(_imports(path, name) - seen.keys())
    return tuple(sorted((str(p.relative_to(ROOT)), hashlib.sha256(p.read_bytes()).hexdigest())
                        for p in seen.values()))


def static_key(stage: str, component: str, modules: tuple[str, ...], config_slice: dict) -> str:
    """Everything in the key but the input bytes: cheap, so doit can check it on every run."""
    return _digest({
        "schema": SCHEMA_VERSION,
        "stage": stage,
        "component": component,
        "sources": source_closure(*modules),
        "config": config_slice,
        "tools": tool_versions(),
    })


def stage_key(static: str, input_digests: dict[str, str]) -> str:
    """The full key: the static part plus the sha256 of every input file, by input name."""
    return _digest({"static": static, "inputs": input_digests})


def _digest(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()
