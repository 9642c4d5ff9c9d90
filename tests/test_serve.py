"""`doit serve`: a static server on 127.0.0.1 with the MIME types the page needs."""

import threading
import urllib.request

import pytest

from stages.runtime import serve


def test_serves_wasm_as_application_wasm_on_loopback_only(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "unet.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "manifest.json").write_text("{}")
    httpd = serve.server(tmp_path, 0)
    assert httpd.server_address[0] == "127.0.0.1"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        types = {n: urllib.request.urlopen(f"{base}/{n}").headers["Content-Type"]
                 for n in ("unet.wasm", "manifest.json", "index.html")}
        assert types == {"unet.wasm": "application/wasm", "manifest.json": "application/json",
                         "index.html": "text/html; charset=utf-8"}
        assert urllib.request.urlopen(f"{base}/unet.wasm").read() == b"\0asm\1\0\0\0"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_directory_without_the_page_is_refused_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="fix: doit build target=webgpu"):
        serve.server(tmp_path, 0)
