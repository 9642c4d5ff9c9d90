"""The remote tier of the store: a plain HTTP cache shared by a team or a CI fleet.

It speaks the protocol that bazel-remote (with --disable_http_ac_validation, since our action
entries are JSON) and nginx WebDAV understand:

    GET/PUT/HEAD <url>/ac/<key>        action entries
    GET/PUT/HEAD <url>/cas/<sha256>    blobs

Settings: configs/cache.toml ([remote] url, mode, timeout_s), overridden by the environment
(WEBSD_CACHE_URL, WEBSD_CACHE_MODE). Credentials come from the environment only
(WEBSD_CACHE_TOKEN for a bearer token, or WEBSD_CACHE_USER + WEBSD_CACHE_PASSWORD for basic
auth); they are put in request headers and nowhere else, and URLs with user:password in them
are refused.

Every failure degrades: a server that is down, slow, answers 5xx or sends bytes that do not
match their digest gives one warning and a miss, and the build goes on locally. A remote
blob is streamed into a temp file and hashed on the way; only a verified file enters cache/.
Uploads stream from disk, and a blob the server already has (HEAD 200) is not sent again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import sys
import tempfile
import tomllib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
MODES = ("off", "read", "read-write")


class RemoteConfigError(Exception):
    """A bad remote-cache setting, worded as one line with the fix."""


@dataclass(frozen=True)
class RemoteSettings:
    url: str = ""
    mode: str = "off"          # "read" for untrusted builds, "read-write" for trusted CI
    timeout_s: float = 10.0

    @staticmethod
    def load(config_file: Path, environ=os.environ) -> "RemoteSettings":
        data = {}
        if config_file.is_file():
            try:
                data = tomllib.loads(config_file.read_text()).get("remote", {})
            except tomllib.TOMLDecodeError as e:
                raise RemoteConfigError(f"{config_file.name}: not valid TOML ({e}); "
                                        f"fix: correct the syntax") from None
            unknown = set(data) - {"url", "mode", "timeout_s"}
            if unknown:
                raise RemoteConfigError(f"{config_file.name}: unknown key remote."
                                        f"{sorted(unknown)[0]}; fix: use url, mode or timeout_s")
        url = environ.get("WEBSD_CACHE_URL", data.get("url", ""))
        mode = environ.get("WEBSD_CACHE_MODE", data.get("mode", "read" if url else "off"))
        timeout = float(environ.get("WEBSD_CACHE_TIMEOUT_S", data.get("timeout_s", 10.0)))
        if mode not in MODES:
            raise RemoteConfigError(f"remote cache mode {mode!r}; fix: set WEBSD_CACHE_MODE or "
                                    f"remote.mode to one of {', '.join(MODES)}")
        if url:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise RemoteConfigError(f"remote cache url {url!r} is not http(s)://host[:port]"
                                        f"[/path]; fix: correct WEBSD_CACHE_URL or remote.url")
            if parts.username or parts.password:
                raise RemoteConfigError("remote cache url carries credentials; fix: remove them "
                                        "and set WEBSD_CACHE_TOKEN or WEBSD_CACHE_USER/PASSWORD")
        if mode != "off" and not url:
            raise RemoteConfigError(f"remote cache mode {mode!r} without a url; fix: set "
                                    f"WEBSD_CACHE_URL or remote.url")
        return RemoteSettings(url, mode, timeout)


def _auth_header() -> dict[str, str]:
    token = os.environ.get("WEBSD_CACHE_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("WEBSD_CACHE_USER"), os.environ.get("WEBSD_CACHE_PASSWORD")
    if user and password:
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {basic}"}
    return {}


class RemoteError(Exception):
    """A remote request that failed; the caller warns and carries on locally."""


class RemoteCache:
    def __init__(self, settings: RemoteSettings):
        self.settings = settings
        parts = urllib.parse.urlsplit(settings.url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._base = parts.path.rstrip("/")
        self.warnings: list[str] = []

    @property
    def writable(self) -> bool:
        return self.settings.mode == "read-write"

    def _warn(self, what: str, error: Exception) -> None:
        # NOTE: never print headers or the URL's query: credentials must not reach a log.
        message = f"remote cache: {what} failed ({type(error).__name__}: {error}); building locally"
        self.warnings.append(message)
        print(f"    warning: {message}", file=sys.stderr)

    @contextlib.contextmanager
    def _request(self, method: str, path: str, body=None, length: int | None = None):
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.settings.timeout_s)
        headers = _auth_header()
        if length is not None:
            headers["Content-Length"] = str(length)
        try:
            conn.request(method, f"{self._base}{path}", body=body, headers=headers)
            response = conn.getresponse()
            yield response
        except (OSError, http.client.HTTPException) as e:
            raise RemoteError(str(e)) from e
        finally:
            conn.close()

    # -- reads --------------------------------------------------------------------------------

    def get_action(self, key: str) -> dict | None:
        try:
            with self._request("GET", f"/ac/{key}") as r:
                if r.status == 404:
                    return None
                if r.status != 200:
                    raise RemoteError(f"HTTP {r.status}")
                entry = json.loads(r.read())
        except (RemoteError, ValueError) as e:
            self._warn(f"GET ac/{key[:12]}", e)
            return None
        if entry.get("key") != key or not isinstance(entry.get("outputs"), dict):
            self._warn(f"GET ac/{key[:12]}", RemoteError("entry is not for this key"))
            return None
        return entry

    def fetch_blob(self, digest: str, dst: Path) -> bool:
        """Stream a blob into dst (atomically), verifying its sha256; False on any failure."""
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, self._request("GET", f"/cas/{digest}") as r:
                if r.status != 200:
                    raise RemoteError(f"HTTP {r.status}")
                while chunk := r.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != digest:
                raise RemoteError("bytes do not match their sha256 (truncated or corrupt)")
            os.chmod(tmp, 0o644)
            os.replace(tmp, dst)
            return True
        except (RemoteError, OSError) as e:
            self._warn(f"GET cas/{digest[:12]}", e)
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # -- writes -------------------------------------------------------------------------------

    def _exists(self, path: str) -> bool:
        with self._request("HEAD", path) as r:
            r.read()
            return r.status == 200

    def _put(self, path: str, body, length: int) -> None:
        with self._request("PUT", path, body=body, length=length) as r:
            r.read()
            if r.status not in (200, 201, 204):
                raise RemoteError(f"HTTP {r.status}")

    def upload(self, key: str, entry: dict, blobs: dict[str, Path]) -> int:
        """Upload the blobs the server lacks, then the action entry; return blobs sent."""
        if not self.writable:
            return 0
        sent = 0
        try:
            for digest, path in blobs.items():
                if self._exists(f"/cas/{digest}"):
                    continue
                with open(path, "rb") as f:
                    self._put(f"/cas/{digest}", f, path.stat().st_size)
                sent += 1
            data = json.dumps({"key": key, **entry}, sort_keys=True).encode()
            self._put(f"/ac/{key}", data, len(data))
        except (RemoteError, OSError) as e:
            self._warn(f"upload of {key[:12]}", e)
        return sent
