"""manifest.json: what an artifact directory holds and what made it.

Each file with its sha256 and size, plus the key and the input digests of the stage that wrote
it, so a loader can check every byte and anyone can trace an artifact to its inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.engine.store import sha256_file, tree_files


def listing(paths: list[Path]) -> dict[str, dict]:
    """{relative path: {"sha256", "size"}} of files, and of every file under directories, by
    their path relative to the directory that holds them (`params/params_shard_0.bin`)."""
    out = {}
    for p in paths:
        files = ({f"{p.name}/{rel}": f for rel, f in tree_files(p).items()} if p.is_dir()
                 else {p.name: p})
        for rel, f in files.items():
            out[rel] = {"sha256": sha256_file(f), "size": f.stat().st_size}
    return out


def render(task: str, key: str, inputs: dict[str, dict], files: dict[str, Path]) -> bytes:
    """inputs: name -> {"path", "sha256"}; files: the artifacts beside the manifest."""
    return json.dumps({
        "stage": task,
        "key": key,
        "inputs": inputs,
        "files": listing(list(files.values())),
    }, indent=1, sort_keys=True).encode() + b"\n"
