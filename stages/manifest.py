"""manifest.json: what an artifact directory holds and what made it.

Each file with its sha256 and size, plus the key and the input digests of the stage that wrote
it, so a loader can check every byte and anyone can trace an artifact to its inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.store import sha256_file


def render(task: str, key: str, inputs: dict[str, dict], files: dict[str, Path]) -> bytes:
    """inputs: name -> {"path", "sha256"}; files: the artifact files beside the manifest."""
    return json.dumps({
        "stage": task,
        "key": key,
        "inputs": inputs,
        "files": {p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
                  for p in files.values()},
    }, indent=1, sort_keys=True).encode() + b"\n"
