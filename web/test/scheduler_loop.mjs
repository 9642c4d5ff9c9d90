// Run the page's denoising-loop scheduler (web/src/schedulers.js) over model outputs given in
// files, so that tests/test_schedulers.py can compare every step with diffusers' step().
//
//   node web/test/scheduler_loop.mjs SCHEDULES.json NAME STEPS DIR [SEED]
//
// DIR/noise.f32: the initial Gaussian latents (float32 little-endian, S values);
// DIR/eps.f32: the model output of every iteration, one after the other (T * S values).
// With DIR/forced.f32 (T * S values), step i is given the sample read from it instead of the
// previous output ("teacher forcing": each step is checked alone, without the drift of earlier
// float32 roundings).
// Writes DIR/js.json ({timesteps, initNoiseSigma}) and DIR/js.f32: x[0] = noise * initNoiseSigma,
// then for each iteration i the UNet input scaleModelInput(x[i], i) and x[i+1] = step(...).
// A stochastic sampler's step noise is the page's: stepNoise(SEED, i) (web/src/rng.js; SEED 0 by
// default). A refused name or step count exits 2 with schedulers.js's own message on stderr.
// DIR/denoised.f32: denoised(eps, i, x[i]) of each iteration, the clean latents a preview shows.
// Image-to-image: with DIR/start.json (the iteration to start from) and DIR/clean.f32 (the
// encoder's latents), x[0] = addNoise(clean, noise) and the run is the schedule's end.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stepNoise } from "../src/rng.js";
import { createScheduler } from "../src/schedulers.js";

const [tablesPath, name, stepsArg, dir, seedArg] = process.argv.slice(2);
const seed = seedArg === undefined ? 0 : JSON.parse(seedArg);
const tables = JSON.parse(readFileSync(tablesPath, "utf8"));
const f32 = (path) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

const start = existsSync(join(dir, "start.json"))
  ? JSON.parse(readFileSync(join(dir, "start.json"), "utf8")) : null;
let s;
try {
  s = createScheduler(tables, name, JSON.parse(stepsArg), start);
} catch (e) {
  console.error(`scheduler_loop: ${e.name}: ${e.message}`);
  process.exit(2);
}
const noise = f32(join(dir, "noise.f32"));
const eps = f32(join(dir, "eps.f32"));
const forced = existsSync(join(dir, "forced.f32")) ? f32(join(dir, "forced.f32")) : null;
const size = noise.length, n = s.timesteps.length;
for (const [what, a] of [["eps", eps], ["forced", forced]]) {
  if (a !== null && a.length !== n * size) {
    console.error(`scheduler_loop: ${what}.f32 has ${a.length} values, expected ${n} * ${size}`);
    process.exit(1);
  }
}
const out = new Float32Array(size * (1 + 2 * n));
const denoised = new Float32Array(size * n);
// a Float32Array: rounded once, like torch
let x = start === null ? noise.map((v) => v * s.initNoiseSigma)
  : s.addNoise(f32(join(dir, "clean.f32")), noise);
out.set(x, 0);
for (let i = 0; i < n; i++) {
  if (forced !== null) x = forced.slice(i * size, (i + 1) * size);
  out.set(s.scaleModelInput(x, i), size * (1 + 2 * i));
  denoised.set(s.denoised(eps.subarray(i * size, (i + 1) * size), i, x), size * i);
  x = s.step(eps.subarray(i * size, (i + 1) * size), i, x, () => stepNoise(seed, i, size));
  out.set(x, size * (2 + 2 * i));
}
const meta = { timesteps: s.timesteps, initNoiseSigma: s.initNoiseSigma };
writeFileSync(join(dir, "js.json"), JSON.stringify(meta));
writeFileSync(join(dir, "js.f32"), new Uint8Array(out.buffer));
writeFileSync(join(dir, "denoised.f32"), new Uint8Array(denoised.buffer));
