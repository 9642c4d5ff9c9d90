"""`doit serve`: dist/<model>/<target>/ over HTTP on 127.0.0.1, for a browser to open.

A plain static server with the MIME types the page needs (application/wasm, so browsers
compile the modules while they stream). It binds to 127.0.0.1 only: an http://127.0.0.1 page
is a secure context, so WebGPU, Web Crypto and the Cache API all work without TLS.
"""

from __future__ import annotations

import functools
import http.server
import sys
from pathlib import Path

MIME = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript",
        ".json": "application/json", ".bin": "application/octet-stream",
        ".html": "text/html; charset=utf-8"}


class Handler(http.server.SimpleHTTPRequestHandler):
    def guess_type(self, path):
        return MIME.get(Path(str(path)).suffix, None) or super().guess_type(path)

    def log_message(self, format, *args):
        sys.stderr.write(f"serve: {self.address_string()} {format % args}\n")


def server(root: Path, port: int) -> http.server.ThreadingHTTPServer:
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root}/index.html is missing; fix: doit build target=webgpu "
                                f"(the bundle stage writes the page)")
    return http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Handler, directory=str(root)))


def serve(root: Path, port: int) -> None:
    httpd = server(root, port)
    print(f"serving {root} on http://127.0.0.1:{httpd.server_address[1]}/ (Ctrl-C stops)",
          flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
