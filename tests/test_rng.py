"""The seeded Gaussian generator: stages/runtime/rng.py and web/src/rng.js give the same bits.

This is the reproducible-seed contract (a seed gives the same latents in the page and in the
Python runner). Both implementations are checked against the frozen vectors in
tests/data/rng_vectors.json, against Random123's published Philox known answers, against each
other on whole draws, and for being a standard normal at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from stages.runtime import rng

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "tests/data/rng_vectors.json").read_text())
DUMP = ROOT / "web/test/rng_dump.mjs"
RNG_JS = ROOT / "web/src/rng.js"


def node() -> str:
    path = shutil.which("node")
    assert path, "node is not on PATH; the page's generator (web/src/rng.js) runs under Node"
    return path


def js_gaussian(seed, n, stream=0) -> np.ndarray:
    proc = subprocess.run([node(), str(DUMP), json.dumps(seed), json.dumps(n), json.dumps(stream)],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return np.frombuffer(proc.stdout, dtype="<f4")


def bits(values: np.ndarray) -> list[str]:
    return [f"{b:08x}" for b in np.asarray(values, dtype="<f4").view("<u4")]


def test_philox_known_answers_python():
    for case in VECTORS["philox4x32_10_kat"]["cases"]:
        ctr = np.array([int(x, 16) for x in case["counter"]], dtype=np.uint64).reshape(4, 1)
        out = rng.philox4x32(ctr, tuple(int(x, 16) for x in case["key"]))
        assert [f"{int(w[0]):08x}" for w in out] == case["out"]


def test_philox_known_answers_js():
    cases = VECTORS["philox4x32_10_kat"]["cases"]
    script = (f"import {{ philox4x32 }} from {json.dumps(RNG_JS.as_uri())};\n"
              f"const cases = {json.dumps(cases)};\n"
              "const h = (s) => parseInt(s, 16);\n"
              "const out = cases.map((c) => philox4x32(c.counter.map(h), c.key.map(h))"
              "  .map((w) => w.toString(16).padStart(8, '0')));\n"
              "console.log(JSON.stringify(out));")
    proc = subprocess.run([node(), "--input-type=module", "-e", script],
                          capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(proc.stdout) == [c["out"] for c in cases]


@pytest.mark.parametrize("case", VECTORS["seeds"], ids=lambda c: f"seed{c['seed']}")
def test_python_matches_vectors(case):
    g = rng.gaussian(case["seed"], VECTORS["n"])
    assert g.dtype == np.float32 and g.shape == (VECTORS["n"],)
    assert bits(g[:16]) == case["first"]
    assert bits(g[-4:]) == case["last"]
    assert hashlib.sha256(g.astype("<f4").tobytes()).hexdigest() == case["sha256_f32le"]
    assert float(g.astype(np.float64).mean()) == pytest.approx(case["mean"], abs=1e-12)
    assert float(g.astype(np.float64).std()) == pytest.approx(case["std"], abs=1e-12)


@pytest.mark.parametrize("case", VECTORS["seeds"], ids=lambda c: f"seed{c['seed']}")
def test_js_matches_vectors_bit_for_bit(case):
    g = js_gaussian(case["seed"], VECTORS["n"])
    assert g.shape == (VECTORS["n"],)
    assert bits(g[:16]) == case["first"]
    assert bits(g[-4:]) == case["last"]
    assert hashlib.sha256(g.tobytes()).hexdigest() == case["sha256_f32le"]


@pytest.mark.parametrize("case", VECTORS["streams"]["cases"],
                         ids=lambda c: f"seed{c['seed']}-stream{c['stream']}")
def test_streams_match_vectors_in_both_languages(case):
    """A stochastic sampler's noise at iteration i is stream 1 + i of the seed, bit for bit."""
    n = VECTORS["streams"]["n"]
    for g in (rng.gaussian(case["seed"], n, case["stream"]),
              js_gaussian(case["seed"], n, case["stream"])):
        assert bits(g[:8]) == case["first"]
        assert hashlib.sha256(g.astype("<f4").tobytes()).hexdigest() == case["sha256_f32le"]
    assert not np.array_equal(rng.gaussian(case["seed"], n, case["stream"]),
                              rng.gaussian(case["seed"], n))
    noise = rng.step_noise(case["seed"], case["stream"] - 1, (1, 4, 4, 4))
    assert np.array_equal(noise.reshape(-1), rng.gaussian(case["seed"], n, case["stream"]))


@pytest.mark.parametrize("seed,n", [(7, 0), (7, 1), (7, 2), (7, 3), (2**31, 999),
                                    (3735928559, 100_000), (2**32 - 2, 54_321)])
def test_js_equals_python_for_any_n(seed, n):
    py, js = rng.gaussian(seed, n), js_gaussian(seed, n)
    assert py.shape == js.shape == (n,)
    mismatch = np.flatnonzero(py.view(np.uint32) != js.view(np.uint32))
    assert mismatch.size == 0, f"{mismatch.size} values differ, first at {mismatch[:5]}"
    # a shorter draw is a prefix of a longer one (values 2j, 2j+1 come from block j alone)
    assert np.array_equal(rng.gaussian(seed, n + 5)[:n].view(np.uint32), py.view(np.uint32))


def test_latents_are_the_flat_draw_in_nchw_order():
    lat = rng.latents(5, (2, 4, 8, 8))
    assert lat.shape == (2, 4, 8, 8) and lat.dtype == np.float32
    assert np.array_equal(lat.reshape(-1), rng.gaussian(5, 2 * 4 * 8 * 8))


def test_is_box_muller_of_the_uniforms():
    """Our own log/sin/cos (the bit-exact ones) agree with libm to float32 precision."""
    n = 200_000
    g = rng.gaussian(99, n).astype(np.float64)
    j = np.arange(n // 2, dtype=np.uint64)
    zero = np.zeros_like(j)
    w = rng.philox4x32(np.stack([j, zero, zero, zero]), (99, 0)).astype(np.uint64)
    a = ((w[0] >> np.uint64(5)) * np.uint64(2**26) + (w[1] >> np.uint64(6))).astype(np.float64)
    b = ((w[2] >> np.uint64(5)) * np.uint64(2**26) + (w[3] >> np.uint64(6))).astype(np.float64)
    r = np.sqrt(-2.0 * np.log((a + 1.0) / 2.0**53))
    theta = 2.0 * np.pi * (b / 2.0**53)
    ref = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).reshape(-1)
    # within one float32 rounding (plus a hair of float64 error) of the libm result
    tol = np.maximum(np.abs(ref), 1e-30) * 2.0**-23 + 1e-12
    assert np.all(np.abs(g - ref) <= tol), float(np.max(np.abs(g - ref) / tol))


def test_statistics_are_standard_normal():
    n = 1_000_000
    g = rng.gaussian(2024, n).astype(np.float64)
    se = 1 / math.sqrt(n)
    assert abs(g.mean()) < 5 * se
    assert abs(g.std() - 1) < 5 * se * math.sqrt(0.5)
    assert abs(np.mean(g**3)) < 5 * se * math.sqrt(15)           # skewness 0
    assert abs(np.mean(g**4) - 3) < 5 * se * math.sqrt(96)       # kurtosis 3
    for k, p in [(1, 0.6826894921370859), (2, 0.9544997361036416), (3, 0.9973002039367398)]:
        frac = np.mean(np.abs(g) < k)
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n), (k, frac, p)
    # Kolmogorov-Smirnov against the normal CDF on the first 100k (5 % critical value 0.0043)
    x = np.sort(g[:100_000])
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    i = np.arange(1, x.size + 1) / x.size
    assert max(np.max(i - cdf), np.max(cdf - (i - 1 / x.size))) < 1.63 / math.sqrt(x.size)
    # neighbours and different seeds are uncorrelated
    assert abs(np.corrcoef(g[:-1:2], g[1::2])[0, 1]) < 5 / math.sqrt(n / 2)
    other = rng.gaussian(2025, n).astype(np.float64)
    assert abs(np.corrcoef(g, other)[0, 1]) < 5 * se


def test_js_statistics_are_standard_normal():
    g = js_gaussian(31337, 500_000).astype(np.float64)
    se = 1 / math.sqrt(g.size)
    assert abs(g.mean()) < 5 * se and abs(g.std() - 1) < 5 * se
    assert np.all(np.isfinite(g)) and np.abs(g).max() < 9   # 53-bit uniforms cap |z| at 8.6


@pytest.mark.parametrize("seed,error", [(-1, ValueError), (2**32, ValueError),
                                        (1.5, TypeError), (3.0, TypeError), (True, TypeError),
                                        ("7", TypeError), (None, TypeError)])
def test_bad_seeds_refused_python(seed, error):
    with pytest.raises(error, match=r"seed must be an integer in 0\.\.4294967295 \(a uint32\)"):
        rng.gaussian(seed, 4)


def test_numpy_integer_seed_accepted():
    assert np.array_equal(rng.gaussian(np.uint32(9), 8), rng.gaussian(9, 8))


@pytest.mark.parametrize("seed,error", [(-1, "RangeError"), (2**32, "RangeError"),
                                        (1.5, "TypeError"), ("7", "TypeError"),
                                        (None, "TypeError"), (True, "TypeError")])
def test_bad_seeds_refused_js(seed, error):
    proc = subprocess.run([node(), str(DUMP), json.dumps(seed), "4"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{error}: seed must be an integer in 0..4294967295 (a uint32)" in proc.stderr


def test_bad_n_refused():
    with pytest.raises(ValueError, match="n must be"):
        rng.gaussian(1, -1)
    proc = subprocess.run([node(), str(DUMP), "1", "-1"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "n must be an integer" in proc.stderr
