"""Execute one stage of the DAG through the store: restore it from cache/ or build it.

    key = stage_key(static part, sha256 of every input file)
    hit  -> copy the recorded blobs to the outputs (each re-hashed on the way): "restored"
    miss -> run the stage into a temp dir, store the outputs as blobs, record the action,
            then rename the outputs into place: "built"

The action entry is recorded before the outputs are renamed into place, so a build killed in
between is finished by the next one from the cache, and a build killed earlier leaves only its
temp dir, which is removed. A per-key lock makes a concurrent build of the same stage wait and
then restore instead of computing it twice.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from stages.engine import config as config_mod
from stages.engine import dag, keys, manifest
from stages.engine.errors import BuildError
from stages.engine.rule import Spec
from stages.engine.remote import RemoteCache, RemoteSettings
from stages.engine.store import CorruptBlob, Store, blob_digests, digest_path, replace_tree

CACHE = config_mod.ROOT / "cache"


def static_key(s: Spec) -> str:
    return keys.static_key(s.stage, s.component, (dag.STAGES[s.stage], *s.modules), s.config)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(config_mod.ROOT))
    except ValueError:
        return path.name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


WORK = config_mod.ROOT / "build" / ".tmp"


def _work_dir(task: str, work: Path) -> Path:
    """A fresh temp dir for one run, named <task>.<pid>.<random>; dirs left behind by killed
    builds (their pid is gone) are removed first, so an interrupted build leaves nothing."""
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.iterdir():
        parts = stale.name.split(".")
        if len(parts) == 3 and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=work, prefix=f"{task.replace(':', '-')}.{os.getpid()}."))


def _restore(store: Store, entry: dict, s: Spec) -> bool:
    try:
        for name, path in s.outputs.items():
            store.get_output(entry["outputs"][name], path)
        return True
    except (KeyError, CorruptBlob) as e:
        if isinstance(e, CorruptBlob):
            print(f"    {s.task}: {e}", file=sys.stderr)
        return False


def _from_remote(remote: RemoteCache, store: Store, key: str) -> dict | None:
    """Copy an action and its blobs from the remote tier into cache/; None on any miss."""
    entry = remote.get_action(key)
    if entry is None:
        return None
    for output in entry["outputs"].values():
        for digest in blob_digests(output):
            if not store.has_blob(digest) and not remote.fetch_blob(digest,
                                                                    store.blob_path(digest)):
                return None
    store.put_action(key, {k: v for k, v in entry.items() if k != "key"})
    return entry


def execute(cfg: config_mod.Config, stage: str, component: str = "model",
            store: Store | None = None, remote: RemoteCache | None = None) -> str:
    """Bring one stage's outputs up to date; return "built", "restored" (from cache/) or
    "downloaded" (from the remote tier, through cache/)."""
    s = dag.spec(cfg, stage, component)
    return execute_spec(s, static_key(s), dag.module(stage).run, store or Store(CACHE), remote,
                        {"model": cfg.model_name, "target": cfg.target_name})


def execute_spec(s: Spec, static: str, action, store: Store,
                 remote: RemoteCache | None = None, provenance: dict | None = None,
                 work: Path = WORK) -> str:
    """execute() for any Spec: `action(inputs, outputs, config)` writes the outputs (into a
    temp dir under `work`) when neither `store` nor `remote` has them under the key made of
    `static` and the inputs' digests. The engine's whole contract, apart from the DAG."""
    for name, path in s.inputs.items():
        if not (path.is_file() or path.is_dir()):
            raise FileNotFoundError(f"{s.task}: input {name} ({_rel(path)}) is missing; "
                                    f"fix: run `doit build` so the stage before it runs")
    digests = {name: digest_path(path) for name, path in s.inputs.items()}
    key = keys.stage_key(static, digests)

    with store.lock(key):
        entry = store.get_action(key)
        if entry and _restore(store, entry, s):
            return "restored"
        if remote is not None:
            entry = _from_remote(remote, store, key)
            if entry and _restore(store, entry, s):
                return "downloaded"

        tmp = _work_dir(s.task, work)
        try:
            tmp_out = {name: tmp / path.name for name, path in s.outputs.items()}
            for name in s.trees:
                tmp_out[name].mkdir()
            start = time.monotonic()
            action(dict(s.inputs), {k: v for k, v in tmp_out.items() if k != "manifest"},
                   s.config)
            if "manifest" in tmp_out:
                inputs = {n: {"path": _rel(p), "sha256": digests[n]} for n, p in s.inputs.items()}
                files = {n: p for n, p in tmp_out.items() if n != "manifest"}
                tmp_out["manifest"].write_bytes(manifest.render(s.task, key, inputs, files))
            missing = [name for name, p in tmp_out.items()
                       if not (p.is_dir() and any(p.iterdir()) if name in s.trees
                               else p.is_file())]
            if missing:
                raise RuntimeError(f"{s.task}: the stage did not write {missing}")
            outputs = {name: store.put_tree(p) if name in s.trees else store.put_blob(p)
                       for name, p in tmp_out.items()}
            entry = {
                "outputs": outputs,
                "provenance": {"stage": s.task, **(provenance or {}), "inputs": digests,
                               "config": s.config, "tools": keys.tool_versions(),
                               "seconds": round(time.monotonic() - start, 3)},
            }
            store.put_action(key, entry)
            for name, path in s.outputs.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                if name in s.trees:
                    replace_tree(tmp_out[name], path)
                else:
                    os.replace(tmp_out[name], path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if remote is not None:
        remote.upload(key, entry, {d: store.blob_path(d) for o in outputs.values()
                                   for d in blob_digests(o)})
    return "built"


def doit_action(model: str, target: str, path: str | None, lora: str | None,
                remote: RemoteSettings, stage: str, component: str) -> dict:
    """The action of a stage task: the outcome goes to doit's task values for the reporter."""
    from doit.exceptions import TaskFailed

    cfg = config_mod.load(model, target, path, lora)
    tier = RemoteCache(remote) if remote.mode != "off" else None
    try:
        return {"outcome": execute(cfg, stage, component, remote=tier)}
    except Exception as e:                   # noqa: BLE001 (sorted out by one_line)
        message = one_line(e)
        if message is None:
            raise
        return TaskFailed(message)


DEBUG = "WEBSD_DEBUG"   # set it (=1) to see the traceback of a failure that names its fix


def one_line(error: BaseException) -> str | None:
    """The one line a user sees for a failure they can fix: a BuildError, or any error whose
    message names its fix ("...; fix: ..."). None for the rest (bugs: their traceback is what
    a report needs) and for every failure while $WEBSD_DEBUG is set."""
    if os.environ.get(DEBUG):
        return None
    text = str(error).strip()
    if isinstance(error, BuildError) or ("fix:" in text and "\n" not in text):
        return f"error: {text}"
    return None
