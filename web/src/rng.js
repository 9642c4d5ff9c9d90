// rng.js: the seeded Gaussian generator of the page (the reproducible-seed contract).
//
// The page draws the initial latents with gaussian(seed, n) (NCHW, row-major), exactly as the
// Python runner does with stages/runtime/rng.py; a seed gives the same image in both. This file and
// stages/runtime/rng.py implement ONE contract, written out step by step in stages/runtime/rng.py's
// docstring; tests/data/rng_vectors.json holds shared vectors and tests/test_rng.py checks
// both bit for bit. Change neither without the other and new vectors.
//
// In short: Philox4x32-10 (Salmon et al., SC 2011; 32-bit words only, counter-based, with
// published known-answer vectors) of counter (j, 0, 0, 0) and key (seed, 0) gives block j;
// its four words make two 53-bit uniforms, and Box-Muller in float64 turns them into values
// 2j and 2j+1, each rounded once to float32 (Math.fround). log, sin and cos are evaluated
// with our own polynomials from +, -, *, / and sqrt only, which IEEE-754 rounds the same
// everywhere; Math.log/sin/cos (fdlibm in V8) and numpy's differ in the last bit at times.
// JS never fuses a*b+c into an FMA, so every step rounds as the Python code does.
// Not torch.randn: the same seed in diffusers gives other latents.
//
// No dependencies; an ES module for the page (bundled by esbuild) and for Node.

export const SEED_MAX = 0xffffffff;
export const N_MAX = 2 ** 32;

const M0 = 0xd2511f53, M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9, W1 = 0xbb67ae85;
const ROUNDS = 10;

const SQRT2 = 1.4142135623730951;
const LN2 = 0.6931471805599453;
const HALF_PI = 1.5707963267948966;
const TWO26 = 2 ** 26, TWO32 = 2 ** 32, TWO53 = 2 ** 53;
// 1/(2k+1): the atanh series of ln; (-1)^k/(2k+1)! and (-1)^k/(2k)!: sin and cos.
const LOG_C = [1, 1 / 3, 1 / 5, 1 / 7, 1 / 9, 1 / 11, 1 / 13, 1 / 15, 1 / 17, 1 / 19, 1 / 21];
const SIN_C = [1, -1 / 6, 1 / 120, -1 / 5040, 1 / 362880, -1 / 39916800, 1 / 6227020800,
  -1 / 1307674368000, 1 / 355687428096000];
const COS_C = [1, -1 / 2, 1 / 24, -1 / 720, 1 / 40320, -1 / 3628800, 1 / 479001600,
  -1 / 87178291200, 1 / 20922789888000];

/** Throw unless seed is an integer 0..2**32-1 (a uint32); return it. */
export function checkSeed(seed) {
  if (typeof seed !== "number" || !Number.isInteger(seed)) {
    throw new TypeError(`seed must be an integer in 0..${SEED_MAX} (a uint32), not ${typeof seed} ${String(seed)}`);
  }
  if (seed < 0 || seed > SEED_MAX) {
    throw new RangeError(`seed must be an integer in 0..${SEED_MAX} (a uint32), got ${seed}`);
  }
  return seed;
}

function checkN(n) {
  if (typeof n !== "number" || !Number.isInteger(n)) {
    throw new TypeError(`n must be an integer in 0..${N_MAX}, not ${typeof n} ${String(n)}`);
  }
  if (n < 0 || n > N_MAX) throw new RangeError(`n must be an integer in 0..${N_MAX}, got ${n}`);
  return n;
}

// High 32 bits of the 64-bit product of two uint32, exactly, from 16-bit halves: every
// partial sum stays below 2**53, so Number arithmetic is exact.
function mulhi(a, b) {
  const ah = a >>> 16, al = a & 0xffff, bh = b >>> 16, bl = b & 0xffff;
  const mid = ah * bl + al * bh + Math.floor((al * bl) / 65536);
  return (ah * bh + Math.floor(mid / 65536)) >>> 0;
}

/** Philox4x32-R of one counter [c0, c1, c2, c3] with key [k0, k1]: four uint32 words. */
export function philox4x32(counter, key, rounds = ROUNDS) {
  let [c0, c1, c2, c3] = counter.map((x) => x >>> 0);
  let [k0, k1] = key.map((x) => x >>> 0);
  for (let r = 0; r < rounds; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

function horner(coeffs, z) {
  let p = coeffs[coeffs.length - 1];
  for (let k = coeffs.length - 2; k >= 0; k--) p = p * z + coeffs[k];
  return p;
}

const sinPoly = (x) => x * horner(SIN_C, x * x);
const cosPoly = (x) => horner(COS_C, x * x);

// ln((a + 1) / 2**53) for an integer 0 <= a < 2**53 (the contract's step 4).
function lnOf53bit(a) {
  const n = a + 1;                                  // exact: <= 2**53
  const hi = Math.floor(n / TWO32);
  const bits = hi > 0 ? 64 - Math.clz32(hi) : 32 - Math.clz32(n);
  let e = bits - 1;
  let m = n / 2 ** e;                               // exact: 1 <= m < 2
  if (m > SQRT2) {
    m = m / 2;
    e = e + 1;
  }
  const s = (m - 1) / (m + 1);
  const lnm = 2 * s * horner(LOG_C, s * s);
  return (e - 53) * LN2 + lnm;
}

/**
 * n float32 standard normal values for a uint32 seed and stream (0: the initial latents, 1 + i:
 * a stochastic sampler's noise at iteration i, ENCODER_STREAM: image-to-image's latent sample);
 * identical bits to stages/runtime/rng.py.
 */
export function gaussian(seed, n, stream = 0) {
  checkSeed(seed);
  checkN(n);
  if (!Number.isInteger(stream) || stream < 0 || stream > 0xFFFFFFFF) {
    throw new RangeError(`stream must be an integer in 0..4294967295, got ${String(stream)}`);
  }
  const out = new Float32Array(n);
  const key = [seed, stream];
  for (let j = 0, i = 0; i < n; j++, i += 2) {
    const [w0, w1, w2, w3] = philox4x32([j, 0, 0, 0], key);
    const a = (w0 >>> 5) * TWO26 + (w1 >>> 6);
    const b = (w2 >>> 5) * TWO26 + (w3 >>> 6);
    const r = Math.sqrt(-2 * lnOf53bit(a));

    const t = 4 * (b / TWO53);
    const q = Math.floor(t);
    const f = t - q;
    let sn, cs;
    if (f <= 0.5) {
      sn = sinPoly(HALF_PI * f);
      cs = cosPoly(HALF_PI * f);
    } else {
      const g = 1 - f;
      sn = cosPoly(HALF_PI * g);
      cs = sinPoly(HALF_PI * g);
    }
    let cos, sin;
    if (q === 0) [cos, sin] = [cs, sn];
    else if (q === 1) [cos, sin] = [-sn, cs];
    else if (q === 2) [cos, sin] = [-cs, -sn];
    else [cos, sin] = [sn, -cs];

    out[i] = Math.fround(r * cos);
    if (i + 1 < n) out[i + 1] = Math.fround(r * sin);
  }
  return out;
}

/** Initial latents of a shape such as [1, 4, 64, 64] (NCHW): gaussian() in row-major order. */
export function latents(seed, shape) {
  return gaussian(seed, shape.reduce((x, y) => x * y, 1));
}

/** The noise a stochastic sampler adds at iteration i: n values of stream 1 + i. */
export function stepNoise(seed, i, n) {
  return gaussian(seed, n, 1 + i);
}

/** Image-to-image: the stream of the VAE encoder's latent sample (mean + std * noise). */
export const ENCODER_STREAM = 0xFFFFFFFF;

/** That sample's noise: n values of stream ENCODER_STREAM. */
export function encoderNoise(seed, n) {
  return gaussian(seed, n, ENCODER_STREAM);
}
