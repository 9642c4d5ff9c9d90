"""Headless Chromium gives the page WebGPU on a machine without a GPU, by both CPU routes.

web/test/chromium_webgpu.mjs probes what the page will meet: an adapter and a device that
runs compute kernels, and a secure context on http://127.0.0.1 with crypto.subtle and a
working Cache API (the page caches weight shards there).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(not (ROOT / "web/node_modules/playwright-core").is_dir(),
                       reason="web/node_modules is missing; fix: (cd web && npm ci)"),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                       reason="no /usr/bin/chromium; fix: apt-get install chromium (.ci/run does)"),
]


def test_both_routes_run_compute_in_a_secure_context():
    proc = subprocess.run([shutil.which("node"), str(ROOT / "web/test/chromium_webgpu.mjs")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    assert set(result) == {"swiftshader", "lavapipe"}
    for route, r in result.items():
        assert r["secureContext"] and r["cryptoSubtle"] and r["cacheApiWorks"] is True, (route, r)
        assert r["navigatorGpu"] and "adapter" in r, (route, r)
        assert r.get("computeOk") is True and r["gpuErrors"] == [], (route, r)
        assert r["matmul512Ms"] > 0, (route, r)
    assert result["swiftshader"]["adapter"]["architecture"] == "swiftshader"
    # compatibility mode: no core-features-and-limits, and a 128-thread default device limit
    assert "core-features-and-limits" not in result["lavapipe"]["features"]
    assert result["lavapipe"]["defaultDeviceLimits"]["maxComputeInvocationsPerWorkgroup"] == 128
    assert result["lavapipe"]["limits"]["maxComputeInvocationsPerWorkgroup"] >= 256
