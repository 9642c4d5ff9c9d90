"""`doit cache:stats`, `doit cache:gc --max-size`, `doit cache:verify`: looking after cache/.

Recency is the file mtime: the store touches an action entry and a blob each time it uses
them, so gc drops the least recently used first and keeps what the last builds needed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from stages.engine.store import CHUNK

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text.upper())
    if not match:
        raise ValueError(f"--max-size {text!r}: fix: give bytes or a size like 500M or 2G")
    return int(float(match[1]) * UNITS[match[2]])


def _entries(cache: Path):
    for kind in ("ac", "cas"):
        for path in (cache / kind).glob("*/*"):
            if path.is_file() and not path.name.endswith(".tmp"):
                yield kind, path


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def stats(cache: Path, last: int = 10) -> dict:
    counts, size = {"ac": 0, "cas": 0}, 0
    for kind, path in _entries(cache):
        counts[kind] += 1
        size += path.stat().st_size
    history = []
    if (cache / "history.jsonl").is_file():
        history = [json.loads(line) for line in (cache / "history.jsonl").read_text().splitlines()
                   if line.strip()][-last:]
    ran = [h for h in history if h["built"] + h["restored"]]
    hits = sum(h["restored"] for h in ran)
    total = sum(h["built"] + h["restored"] for h in ran)
    result = {"bytes": size, "actions": counts["ac"], "blobs": counts["cas"],
              "builds": len(history), "hit_rate": hits / total if total else None,
              "downloaded": sum(h.get("downloaded", 0) for h in history)}
    print(f"cache/: {_human(size)} in {counts['cas']} blobs, {counts['ac']} action entries")
    for h in history:
        print(f"  build: {h['built']} built, {h['restored']} restored "
              f"({h.get('downloaded', 0)} from the remote), {h['up-to-date']} up-to-date")
    if total:
        print(f"hit rate of the last {len(ran)} builds that ran stages: {hits}/{total} "
              f"= {100 * hits / total:.1f} %")
    return result


def gc(cache: Path, max_size: int) -> dict:
    """Delete least recently used entries until cache/ holds at most max_size bytes."""
    entries = sorted(((p.stat().st_mtime, p.stat().st_size, p) for _, p in _entries(cache)),
                     key=lambda e: e[0])
    total = sum(size for _, size, _ in entries)
    removed = 0
    for _, size, path in entries:
        if total <= max_size:
            break
        path.unlink(missing_ok=True)
        total -= size
        removed += 1
    print(f"cache/: removed {removed} entries, {_human(total)} left (limit {_human(max_size)})")
    return {"removed": removed, "bytes": total}


def verify(cache: Path) -> dict:
    """Re-hash every blob; delete those whose bytes do not match their name."""
    checked, bad = 0, []
    for kind, path in _entries(cache):
        if kind != "cas":
            continue
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        checked += 1
        if h.hexdigest() != path.name:
            path.unlink(missing_ok=True)
            bad.append(path.name)
    print(f"cache/: {checked} blobs checked, {len(bad)} corrupt and removed")
    return {"checked": checked, "corrupt": bad}
