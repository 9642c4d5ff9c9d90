"""The content-addressed store in cache/: an action cache and blobs stored by their sha256.

    cache/ac/<key[:2]>/<key>.json      stage key -> output digests + provenance
    cache/cas/<sha[:2]>/<sha256>       file bytes, named by their own digest
    cache/locks/<key>.lock             one builder per key at a time

Writes go to a temp file in the same directory and are renamed into place, so a reader sees a
whole file or none, and a killed build leaves no half-written entry. A blob is re-hashed when it
is read; one whose bytes no longer match its name is deleted and reported as a miss, so the
stage that made it runs again. Nothing here imports torch or tvm.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

CHUNK = 1 << 20
FILE_MODE = 0o644  # mkstemp makes 0600 files; outputs are meant to be read by others too


def _temp_beside(path: Path) -> tuple[int, str]:
    """An open temp file in path's directory (same filesystem, so os.replace is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, FILE_MODE)
    return fd, tmp


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_files(root: Path) -> dict[str, Path]:
    """The files under a directory output, by relative POSIX path, sorted."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def tree_digest(listing: dict[str, str]) -> str:
    """One digest for a directory: sha256 over its sorted (relative path, file sha256) pairs."""
    h = hashlib.sha256()
    for rel in sorted(listing):
        h.update(f"{rel}\0{listing[rel]}\n".encode())
    return h.hexdigest()


def digest_path(path: Path) -> str:
    """sha256 of a file, or the tree digest of a directory (a stage input of either kind)."""
    if path.is_dir():
        return tree_digest({rel: sha256_file(p) for rel, p in tree_files(path).items()})
    return sha256_file(path)


@functools.cache
def _renameat2():
    """The C library's renameat2, or None where it has none (looked up once)."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the C library
    or the filesystem cannot."""
    renameat2 = _renameat2()
    at_fdcwd, rename_exchange = -100, 2
    return renameat2 is not None and renameat2(at_fdcwd, os.fsencode(a), at_fdcwd,
                                               os.fsencode(b), rename_exchange) == 0


def replace_tree(src: Path, dst: Path) -> None:
    """Put directory src at dst. A reader sees the old tree or the new one, never none: an
    existing dst is swapped with src in one step, and the old tree, now at src, removed. (Moving
    the old tree aside first left a moment without dst: a second build restoring the same
    output then failed the first one's next stage, "input ... is missing".) Where the swap is
    not available, the old tree is moved aside first."""
    if dst.exists() and _exchange(src, dst):
        shutil.rmtree(src, ignore_errors=True)
        return
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".old"))
        os.replace(dst, old / dst.name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy src to dst so that dst is either the old file or the whole new one."""
    fd, tmp = _temp_beside(dst)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def blob_digests(output: dict) -> list[str]:
    """The blobs a recorded output is made of: itself, or each file of a directory."""
    if "tree" in output:
        return [t["sha256"] for t in output["tree"].values()]
    return [output["sha256"]]


class CorruptBlob(Exception):
    """A blob whose bytes do not hash to its name; it has been removed from the store."""


class Store:
    """cache/ on disk. Safe for several processes at once: every write is an atomic rename."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _ac(self, key: str) -> Path:
        return self.root / "ac" / key[:2] / f"{key}.json"

    def _cas(self, digest: str) -> Path:
        return self.root / "cas" / digest[:2] / digest

    def blob_path(self, digest: str) -> Path:
        """Where a blob lives (the remote tier downloads straight into it, verified)."""
        return self._cas(digest)

    def has_blob(self, digest: str) -> bool:
        return self._cas(digest).is_file()

    @staticmethod
    def _touch(path: Path) -> None:
        """Mark an entry as used now: `doit cache:gc` drops the least recently used first."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)

    @contextlib.contextmanager
    def lock(self, key: str):
        """Hold the builder lock for `key`: a second build of the same key waits, then hits."""
        path = self.root / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- blobs --------------------------------------------------------------------------------

    def put_blob(self, src: Path) -> dict:
        """Store a file's bytes; return {"sha256", "size"}. Already-present blobs are kept."""
        digest = sha256_file(src)
        dst = self._cas(digest)
        if not dst.exists():
            atomic_copy(src, dst)
        return {"sha256": digest, "size": src.stat().st_size}

    def put_tree(self, src: Path) -> dict:
        """Store every file of a directory; return {"sha256": tree digest, "size", "tree"}."""
        tree = {rel: self.put_blob(p) for rel, p in tree_files(src).items()}
        return {"sha256": tree_digest({rel: t["sha256"] for rel, t in tree.items()}),
                "size": sum(t["size"] for t in tree.values()), "tree": tree}

    def get_tree(self, output: dict, dst: Path) -> None:
        """Rebuild a directory output from its blobs beside dst, then swap it in whole."""
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp"))
        try:
            for rel, blob in output["tree"].items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                self.get_blob(blob["sha256"], tmp / rel)
            os.chmod(tmp, 0o755)
            replace_tree(tmp, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def get_output(self, output: dict, dst: Path) -> None:
        """Restore one recorded output, a file or a directory."""
        if "tree" in output:
            self.get_tree(output, dst)
        else:
            self.get_blob(output["sha256"], dst)

    def get_blob(self, digest: str, dst: Path) -> None:
        """Copy a blob to dst atomically, after checking its bytes; raise KeyError or CorruptBlob."""
        src = self._cas(digest)
        if not src.exists():
            raise KeyError(digest)
        fd, tmp = _temp_beside(dst)
        try:
            h = hashlib.sha256()
            with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                while chunk := fin.read(CHUNK):
                    h.update(chunk)
                    fout.write(chunk)
            if h.hexdigest() != digest:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(src)
                raise CorruptBlob(f"cache/cas/{digest[:2]}/{digest}: bytes do not match their "
                                  f"sha256; removed it, the stage will be rebuilt")
            os.replace(tmp, dst)
            self._touch(src)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # -- action cache -------------------------------------------------------------------------

    def get_action(self, key: str) -> dict | None:
        path = self._ac(key)
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            path.unlink(missing_ok=True)
            return None
        if entry.get("key") != key or not isinstance(entry.get("outputs"), dict):
            path.unlink(missing_ok=True)
            return None
        self._touch(path)
        return entry

    def put_action(self, key: str, entry: dict) -> None:
        entry = {"key": key, **entry}
        atomic_write_bytes(self._ac(key), json.dumps(entry, indent=1, sort_keys=True).encode())
