"""Read an emitted tensor cache back, checking every shard against the manifest first.

The Python side of the loader the page and the Node harness have (web/src/params.js): the same
files, the same check. A shard whose bytes changed is refused with a message naming it, never
silently loaded into a model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


class CorruptShard(Exception):
    """A shard whose size or sha256 differs from what manifest.json recorded."""


def verified_shards(params_dir: Path, manifest: Path) -> dict[str, bytes]:
    """Every shard's bytes by its dataPath, each checked against the manifest."""
    files = json.loads(manifest.read_text())["files"]
    cache = json.loads((params_dir / "tensor-cache.json").read_text())
    shards = {}
    for shard in cache["records"]:
        rel = f"{params_dir.name}/{shard['dataPath']}"
        data = (params_dir / shard["dataPath"]).read_bytes()
        expect = files.get(rel)
        if expect is None:
            raise CorruptShard(f"{rel}: not listed in {manifest.name}; fix: rebuild (doit build)")
        if len(data) != expect["size"] or hashlib.sha256(data).hexdigest() != expect["sha256"]:
            raise CorruptShard(f"{rel}: bytes do not match {manifest.name} (sha256); fix: "
                               f"delete it and rebuild (doit build restores it from cache/)")
        shards[shard["dataPath"]] = data
    return shards


def load(params_dir: Path, manifest: Path) -> list:
    """The params as numpy arrays, in the order `main` takes them."""
    import numpy as np

    cache = json.loads((params_dir / "tensor-cache.json").read_text())
    shards = verified_shards(params_dir, manifest)
    arrays = {}
    for shard in cache["records"]:
        data = shards[shard["dataPath"]]
        for rec in shard["records"]:
            if rec["format"] != "raw":
                raise ValueError(f"{rec['name']}: format {rec['format']} is not supported")
            dtype = np.dtype(rec["dtype"])
            count = rec["nbytes"] // dtype.itemsize
            arrays[rec["name"]] = np.frombuffer(data, dtype, count,
                                                rec["byteOffset"]).reshape(rec["shape"])
    return [arrays[name] for name in cache["metadata"]["params"]]
