"""rng: the seeded Gaussian generator of the product (the reproducible-seed contract).

The page (web/src/rng.js) and the Python runner draw the initial latents with this one
generator, so a seed gives the same image in both. It is the only math written in both
languages; tests/data/rng_vectors.json holds the shared test vectors and tests/test_rng.py
checks both implementations against them bit for bit.

Why this design: the result must be identical to the bit in JavaScript (float64 Numbers,
32-bit integer ops) and numpy, on any machine. So the uniform generator is Philox4x32-10
(Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the generator of
cuRAND and of torch on CUDA): 32-bit words only, counter-based (value i does not depend on
drawing values 0..i-1, so a GPU can make them later), and published known-answer vectors.
The Gaussian transform is Box-Muller in float64 with log, sin and cos written here from
+, -, *, / and sqrt only: those are correctly rounded IEEE operations in both languages,
while library log/sin/cos differ in the last bit between V8 (fdlibm), glibc and numpy's SIMD
loops, which after rounding to float32 would now and then give a different value.
These are NOT torch.randn values: the same seed in diffusers gives other latents.

The contract, exactly (all float arithmetic is IEEE-754 binary64, round to nearest even,
one rounding per written operation, evaluated left to right; "fl32" rounds binary64 to
binary32, round to nearest even):

seed: an integer 0 <= seed <= 2**32 - 1 (a uint32). Anything else (bool, float, negative,
too large) is refused with ValueError/TypeError. n: an integer 0 <= n <= 2**32. stream: a
uint32 naming the draw: 0 for the initial latents, 1 + i for the noise a stochastic sampler
(Euler ancestral) adds at its iteration i (step_noise; stages/runtime/samplers.py), and
ENCODER_STREAM (2**32 - 1) for image-to-image's sample of the VAE encoder's latent
distribution (encoder_noise).

1. Philox4x32-10. Constants M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9,
   W1 = 0xBB67AE85. For a counter (c0, c1, c2, c3) and key (k0, k1), all uint32, run 10
   rounds; before every round but the first, k0 += W0 and k1 += W1 (mod 2**32). One round:
   p0 = M0 * c0 and p1 = M1 * c2 as exact 64-bit products, hi/lo their upper/lower 32 bits;
   (c0, c1, c2, c3) <- (hi(p1) ^ c1 ^ k0, lo(p1), hi(p0) ^ c3 ^ k1, lo(p0)).
2. Block j (j = 0, 1, ..., ceil(n / 2) - 1) is Philox4x32-10 of counter (j, 0, 0, 0) with
   key (seed, stream), giving words w0, w1, w2, w3. It makes output values 2j and 2j + 1.
3. Two 53-bit integers: a = (w0 >> 5) * 2**26 + (w1 >> 6) and b = (w2 >> 5) * 2**26 + (w3 >> 6).
   u1 = (a + 1) / 2**53 in (0, 1]; u2 = b / 2**53 in [0, 1). (All exact.)
4. ln(u1): write a + 1 = m * 2**e with 1 <= m < 2 (exact: e is the bit length of a + 1
   minus one); if m > SQRT2 (= 1.4142135623730951): m = m / 2, e = e + 1.
   s = (m - 1) / (m + 1); z = s * s; p = L[10]; for k = 9 down to 0: p = p * z + L[k],
   with L[k] = 1 / (2k + 1) (one division, L[0] = 1); lnm = 2 * s * p;
   ln_u1 = (e - 53) * LN2 + lnm with LN2 = 0.6931471805599453.
   r = sqrt(-2 * ln_u1).
5. The angle 2*pi*u2: t = 4 * u2; q = floor(t) in {0, 1, 2, 3}; f = t - q (exact).
   With SIN(x) = x * P_S(x * x) and COS(x) = P_C(x * x), Horner polynomials over
   S[k] = (-1)**k / (2k + 1)! and C[k] = (-1)**k / (2k)!, k = 0..8 (one division of 1 or -1
   by the exact factorial; Horner from k = 8: p = S[8]; p = p * x2 + S[k] for k = 7..0),
   and HALF_PI = 1.5707963267948966:
   if f <= 0.5: sn = SIN(HALF_PI * f), cs = COS(HALF_PI * f)
   else:        g = 1 - f; sn = COS(HALF_PI * g), cs = SIN(HALF_PI * g).
   (cos, sin) of the angle = (cs, sn), (-sn, cs), (-cs, -sn), (sn, -cs) for q = 0, 1, 2, 3.
6. out[2j] = fl32(r * cos), out[2j + 1] = fl32(r * sin); when n is odd the last value of
   the last block is dropped.

Latents of shape (N, C, H, W) are gaussian(seed, N*C*H*W) in row-major (NCHW) order.
"""

from __future__ import annotations

import numbers

import numpy as np

from stages.runtime.contract import SEED

SEED_MAX = SEED["max"]
N_MAX = 2**32

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10

SQRT2 = 1.4142135623730951
LN2 = 0.6931471805599453
HALF_PI = 1.5707963267948966
# 1/(2k+1) for the atanh series of ln; (-1)^k/(2k+1)! and (-1)^k/(2k)! for sin and cos.
LOG_COEFFS = tuple(1 / (2 * k + 1) for k in range(11))
SIN_COEFFS = tuple((-1) ** k / _f for k, _f in enumerate(
    (1, 6, 120, 5040, 362880, 39916800, 6227020800, 1307674368000, 355687428096000)))
COS_COEFFS = tuple((-1) ** k / _f for k, _f in enumerate(
    (1, 2, 24, 720, 40320, 3628800, 479001600, 87178291200, 20922789888000)))

_MASK32 = np.uint64(0xFFFFFFFF)


def check_seed(seed) -> int:
    """The seed as a Python int, or a clear error: seeds are integers 0..2**32-1 (uint32)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer in 0..{SEED_MAX} (a uint32), "
                        f"not {type(seed).__name__} {seed!r}")
    seed = int(seed)
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer in 0..{SEED_MAX} (a uint32), got {seed}")
    return seed


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an integer in 0..{N_MAX}, not {type(n).__name__} {n!r}")
    if not 0 <= int(n) <= N_MAX:
        raise ValueError(f"n must be an integer in 0..{N_MAX}, got {n}")
    return int(n)


def philox4x32(counters: np.ndarray, key: tuple[int, int], rounds: int = ROUNDS) -> np.ndarray:
    """Philox4x32-R of each counter: (4, B) uint32 counters -> (4, B) uint32 words."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in counters)
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for r in range(rounds):
        if r:
            k0 = (k0 + np.uint64(W0)) & _MASK32
            k1 = (k1 + np.uint64(W1)) & _MASK32
        p0 = np.uint64(M0) * c0     # < 2**64: exact in uint64
        p1 = np.uint64(M1) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _MASK32)
    return np.stack([c0, c1, c2, c3]).astype(np.uint32)


def _horner(coeffs: tuple[float, ...], z: np.ndarray) -> np.ndarray:
    p = np.full_like(z, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        p = p * z + c            # two roundings (numpy never fuses them), as in JS
    return p


def _sin(x: np.ndarray) -> np.ndarray:
    return x * _horner(SIN_COEFFS, x * x)


def _cos(x: np.ndarray) -> np.ndarray:
    return _horner(COS_COEFFS, x * x)


def _ln_of_53bit(a: np.ndarray) -> np.ndarray:
    """ln((a + 1) / 2**53) for integers 0 <= a < 2**53, as the contract's step 4."""
    mant, ex = np.frexp((a + np.uint64(1)).astype(np.float64))   # exact: a + 1 <= 2**53
    m, e = mant * 2.0, ex.astype(np.float64) - 1.0               # 1 <= m < 2, exact
    big = m > SQRT2
    m = np.where(big, m / 2.0, m)
    e = np.where(big, e + 1.0, e)
    s = (m - 1.0) / (m + 1.0)
    lnm = 2.0 * s * _horner(LOG_COEFFS, s * s)
    return (e - 53.0) * LN2 + lnm


def _check_stream(stream) -> int:
    if isinstance(stream, bool) or not isinstance(stream, numbers.Integral) \
            or not 0 <= int(stream) <= SEED_MAX:
        raise ValueError(f"stream must be an integer in 0..{SEED_MAX}, got {stream!r}")
    return int(stream)


def gaussian(seed: int, n: int, stream: int = 0) -> np.ndarray:
    """n float32 standard normal values for a uint32 seed and stream (the contract in the
    module doc)."""
    seed, n, stream = check_seed(seed), _check_n(n), _check_stream(stream)
    blocks = (n + 1) // 2
    j = np.arange(blocks, dtype=np.uint64)
    zero = np.zeros(blocks, dtype=np.uint64)
    w = philox4x32(np.stack([j, zero, zero, zero]), (seed, stream)).astype(np.uint64)
    a = (w[0] >> np.uint64(5)) * np.uint64(2**26) + (w[1] >> np.uint64(6))
    b = (w[2] >> np.uint64(5)) * np.uint64(2**26) + (w[3] >> np.uint64(6))
    r = np.sqrt(-2.0 * _ln_of_53bit(a))

    t = 4.0 * (b.astype(np.float64) / 2.0**53)   # exact: b < 2**53
    q = np.floor(t)
    f = t - q
    low = f <= 0.5
    x = HALF_PI * np.where(low, f, 1.0 - f)
    sx, cx = _sin(x), _cos(x)
    sn, cs = np.where(low, sx, cx), np.where(low, cx, sx)
    cos = np.select([q == 0, q == 1, q == 2], [cs, -sn, -cs], sn)
    sin = np.select([q == 0, q == 1, q == 2], [sn, cs, -sn], -cs)

    out = np.empty((blocks, 2), dtype=np.float32)
    out[:, 0] = (r * cos).astype(np.float32)
    out[:, 1] = (r * sin).astype(np.float32)
    return out.reshape(-1)[:n]


def latents(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Initial latents of a shape (e.g. (1, 4, 64, 64), NCHW): gaussian() in row-major order."""
    return gaussian(seed, int(np.prod(shape, dtype=np.int64))).reshape(shape)


ENCODER_STREAM = 2**32 - 1


def encoder_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Image-to-image: the noise of the sample drawn from the VAE encoder's latent distribution
    (mean + std * noise): stream ENCODER_STREAM, in row-major order."""
    return gaussian(seed, int(np.prod(shape, dtype=np.int64)), ENCODER_STREAM).reshape(shape)


def step_noise(seed: int, i: int, shape: tuple[int, ...]) -> np.ndarray:
    """The noise a stochastic sampler adds at iteration i: stream 1 + i, in row-major order."""
    return gaussian(seed, int(np.prod(shape, dtype=np.int64)), 1 + i).reshape(shape)
