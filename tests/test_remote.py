"""The remote tier of cache/ against a real HTTP cache: nginx with WebDAV on 127.0.0.1.

Machine A builds the tiny model and uploads; machine B is a fresh checkout with an empty cache/
that must build nothing. Then the ways a remote can fail: killed mid-build, corrupt bytes, a
token that must reach it and nowhere else.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ALL_TASKS, checkout, doit, doit_argv, report, summary, tree_digests

TOKEN = "websd-test-token-4f1c9a"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed "
                                "(.ci/run installs Debian's nginx-light)")


class Nginx:
    """An nginx WebDAV server in a temp dir, started and stopped by the test."""

    def __init__(self, root: Path, token: str | None):
        self.root = root
        (root / "data").mkdir(parents=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        auth = (f'if ($http_authorization != "Bearer {token}") {{ return 401; }}'
                if token else "")
        temp = "\n".join(f"{kind}_temp_path {root}/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (root / "nginx.conf").write_text(f"""
user root;
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{}}
http {{
    log_format auth '$request_method $uri $status "$http_authorization"';
    access_log {root}/access.log auth;
    {temp}
    server {{
        listen 127.0.0.1:{self.port};
        root {root}/data;
        client_max_body_size 0;
        location / {{
            {auth}
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
""")
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Nginx":
        self.proc = subprocess.Popen([NGINX, "-c", str(self.root / "nginx.conf"),
                                      "-p", str(self.root)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"nginx did not start: {(self.root / 'error.log').read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)

    def access_log(self) -> str:
        path = self.root / "access.log"
        return path.read_text() if path.exists() else ""


def _env(server: Nginx, mode: str, token: str | None = TOKEN) -> dict:
    env = {"WEBSD_CACHE_URL": server.url, "WEBSD_CACHE_MODE": mode, "WEBSD_CACHE_TIMEOUT_S": "5"}
    if token:
        env["WEBSD_CACHE_TOKEN"] = token
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Nginx(tmp_path_factory.mktemp("nginx"), TOKEN).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def machine_a(server, tmp_path_factory):
    """A cold build of the tiny model that uploads everything to the server."""
    ws = checkout(tmp_path_factory.mktemp("machine_a"))
    proc = doit(ws, "build", env=_env(server, "read-write"))
    assert summary(proc) == (len(ALL_TASKS), 0, 0)
    return ws


def test_fresh_machine_builds_nothing_from_the_remote(server, machine_a, tmp_path):
    ws = checkout(tmp_path / "machine_b")
    proc = doit(ws, "build", env=_env(server, "read"))
    assert summary(proc) == (0, len(ALL_TASKS), 0)
    assert report_downloaded(ws) == len(ALL_TASKS)
    assert tree_digests(ws, "build", "dist") == tree_digests(machine_a, "build", "dist")
    assert "warning" not in proc.stderr


def report_downloaded(ws: Path) -> int:
    import json

    return json.loads((ws / "dist/tiny/llvm/build-report.json").read_text())["downloaded"]


@pytest.mark.long
def test_token_reaches_the_server_and_no_file_the_build_writes(server, machine_a, tmp_path):
    ws = checkout(tmp_path / "machine_b")
    doit(ws, "build", env=_env(server, "read"))
    log = server.access_log()
    assert "GET /ac/" in log and f'"Bearer {TOKEN}"' in log
    written = [p for d in ("build", "dist", "cache") for p in (ws / d).rglob("*") if p.is_file()]
    assert written
    leaks = [p for p in written if TOKEN.encode() in p.read_bytes()]
    assert not leaks, leaks
    # without the token the server says 401: the build warns and builds locally
    ws2 = checkout(tmp_path / "no_token")
    proc = doit(ws2, "build", env=_env(server, "read", token=None))
    assert "HTTP 401" in proc.stderr
    assert summary(proc) == (len(ALL_TASKS), 0, 0)


def test_corrupt_remote_blob_is_not_used_and_its_stage_rebuilt(server, machine_a, tmp_path):
    import hashlib

    digest = hashlib.sha256((machine_a / "dist/tiny/llvm/unet/unet.so").read_bytes()).hexdigest()
    blob = server.root / "data" / "cas" / digest
    original = blob.read_bytes()
    try:
        blob.write_bytes(original[: len(original) // 2])  # truncated
        ws = checkout(tmp_path / "machine_b")
        proc = doit(ws, "build", env=_env(server, "read"))
    finally:
        blob.write_bytes(original)
    assert "do not match their sha256" in proc.stderr
    assert report(ws)["built"] == {"compile:unet"}   # emit's copy: the blob compile put back
    assert tree_digests(ws, "dist") == tree_digests(machine_a, "dist")
    assert not (ws / "cache/cas" / digest[:2] / digest).exists() or \
        hashlib.sha256((ws / "cache/cas" / digest[:2] / digest).read_bytes()).hexdigest() == digest
    verify = doit(ws, "cache:verify")
    assert "0 corrupt" in verify.stdout


@pytest.mark.long
def test_server_killed_mid_build_still_builds_locally(tmp_path):
    srv = Nginx(tmp_path / "nginx", None).start()
    ws = checkout(tmp_path / "ws")
    env = {**_env(srv, "read-write", token=None)}
    import os

    proc = subprocess.Popen(doit_argv("build"), cwd=ws, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **env})
    output = []
    try:
        for line in proc.stdout:
            output.append(line)
            if line.startswith(".  import:"):
                srv.stop()
                break
        output.append(proc.stdout.read())
        proc.wait(timeout=600)
    finally:
        srv.stop()
    text = "".join(output)
    assert proc.returncode == 0, text[-3000:]
    assert "remote cache:" in text and "building locally" in text
    assert f"stages: {len(ALL_TASKS)} built, 0 restored, 0 up-to-date" in text
    assert '"passed": true' in (ws / "dist/tiny/llvm/unet/verify.json").read_text()


@pytest.mark.long
def test_gc_brings_cache_under_the_limit_and_the_next_build_works(workspace):
    doit(workspace, "cache:gc", "--max-size", "8M")
    size = sum(p.stat().st_size for p in (workspace / "cache").rglob("*") if p.is_file()
               and ("ac" in p.parts or "cas" in p.parts))
    assert size <= 8 << 20
    shutil.rmtree(workspace / "build")
    shutil.rmtree(workspace / "dist")
    proc = doit(workspace, "build")
    built, restored, _ = summary(proc)
    assert built > 0 and built + restored == len(ALL_TASKS)
    assert '"passed": true' in (workspace / "dist/tiny/llvm/unet/verify.json").read_text()


def test_upload_skips_blobs_the_server_has(server, machine_a, tmp_path):
    ws = tmp_path / "a_copy"
    shutil.copytree(machine_a, ws)
    path = ws / "stages/passes/drop_unit_scale.py"
    path.write_text("# same passes, new source: a new key, the same output bytes\n"
                    + path.read_text())
    before = server.access_log().count("PUT /cas/")
    doit(ws, "build", env=_env(server, "read-write"))
    log = server.access_log()
    assert report(ws)["built"] == {"passes:unet"}
    assert log.count("PUT /cas/") == before        # the module blob was there already
    assert log.count("PUT /ac/") >= 1 and "HEAD /cas/" in log
    stats = doit(ws, "cache:stats")
    assert "hit rate of the last" in stats.stdout and "action entries" in stats.stdout
