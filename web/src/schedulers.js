// schedulers.js: the denoising loop's scheduler update for the page (DPM-Solver++ 2M, PNDM/PLMS,
// Euler, DDIM, LMS, Euler ancestral, ...), driven entirely by schedules.json.
//
// Nothing here is scheduler math. stages/runtime/samplers.py measures diffusers' own schedulers at build
// time and writes, for every scheduler and step count, the UNet timesteps, init_noise_sigma, the
// scale_model_input factor per iteration, and each step() as a linear combination:
//
//   x[i+1] = sum over [b, c] in update[i].x of c * x[i-b]
//          + sum over [b, c] in update[i].e of c * e[i-b]
//
// where x[j] is the sample given to step j and e[j] the model output (guided noise prediction)
// given to step j; a stochastic sampler's update[i].z times the step's noise is added too.
// PNDM's warm-up and ets, DPM-Solver++'s previous data prediction and its
// first-order first and last steps are all in those coefficients. tests/test_schedulers.py runs
// this file against diffusers' step() for every scheduler.
//
// Usage (one object per generation; steps must be called in order):
//
//   const s = createScheduler(tables, "dpm++2m", 20);
//   let x = noise.map((v) => v * s.initNoiseSigma);            // or Math.fround(v * sigma)
//   for (let i = 0; i < s.timesteps.length; i++) {
//     const eps = guidedUNet(s.scaleModelInput(x, i), s.timesteps[i]);
//     x = s.step(eps, i, x);
//   }
//
// Image-to-image runs the end of a schedule: createScheduler(tables, name, steps, start), with
// start = firstIteration(steps, strength). Its iterations are numbered from 0 again; the first
// latents are addNoise(clean, noise), and a multistep sampler's first updates from there are
// the restart's own (schedules.json steps[n].restart[start]: it has no history yet).
//
// Arithmetic is float64 inside; results are Float32Array. No dependencies.

export const FORMAT = "websd-schedules/1";

/** The scheduler names a schedules.json offers, in its order. */
export function schedulerNames(tables) {
  checkTables(tables);
  return Object.keys(tables.schedulers);
}

function checkTables(tables) {
  if (!tables || typeof tables !== "object" || tables.format !== FORMAT) {
    const got = tables && typeof tables === "object" ? JSON.stringify(tables.format)
      : typeof tables;
    throw new TypeError(`schedules.json must have format "${FORMAT}", got ${got}`);
  }
}

/**
 * Image-to-image: the iteration a run of `steps` steps at `strength` starts from, as diffusers'
 * StableDiffusionImg2ImgPipeline.get_timesteps (stages/runtime/samplers.py first_iteration).
 */
export function firstIteration(steps, strength) {
  return Math.max(steps - Math.min(Math.floor(steps * strength), steps), 0);
}

export function createScheduler(tables, name, steps, start = null) {
  checkTables(tables);
  const entry = Object.hasOwn(tables.schedulers, name) ? tables.schedulers[name] : undefined;
  if (entry === undefined) {
    const names = Object.keys(tables.schedulers).join(", ");
    throw new RangeError(`unknown scheduler ${JSON.stringify(name)}; one of: ${names}`);
  }
  const max = tables.max_steps;
  if (!Number.isInteger(steps) || steps < 1 || steps > max) {
    throw new RangeError(`steps must be 1..${max}, got ${String(steps)}`);
  }
  const table = entry.steps[String(steps)];
  if (!table) throw new RangeError(`schedules.json has no ${name} table for ${steps} steps`);

  if (table.input_scale.length !== table.timesteps.length
      || table.update.length !== table.timesteps.length) {
    throw new TypeError(`schedules.json: ${name}/${steps} has ${table.timesteps.length} ` +
      `timesteps, ${table.input_scale.length} input scales and ${table.update.length} updates`);
  }
  // image-to-image (start given): this run's iterations 0..n-1 are the table's start.., and a
  // restart's own updates come first
  const from = start ?? 0;
  if (!Number.isInteger(from) || from < 0 || from >= steps) {
    throw new RangeError(`start must be an iteration in 0..${steps - 1}, got ${String(start)}`);
  }
  const restart = start === null ? null : table.restart?.[start];
  if (restart === undefined) {
    throw new TypeError(`schedules.json has no ${name}/${steps} restart at ${start}; ` +
      "rebuild the model");
  }
  const timesteps = table.timesteps.slice(from);
  const inputScale = table.input_scale.slice(from);
  const update = table.update.slice(from).map((u, k) => restart?.update?.[from + k] ?? u);
  const n = timesteps.length;
  // The last iteration that reads x[j] / e[j], so that history is dropped once unused.
  const lastX = new Array(n).fill(-1), lastE = new Array(n).fill(-1);
  update.forEach((u, i) => {
    for (const [b] of u.x) lastX[i - b] = i;
    for (const [b] of u.e) lastE[i - b] = i;
  });
  const alphasCumprod = tables.alphas_cumprod ?? null;
  const vPrediction = tables.prediction_type === "v_prediction";
  const xs = new Array(n).fill(null), es = new Array(n).fill(null);
  let next = 0;   // the iteration step() expects
  let size = -1;  // elements per latent, fixed by the first call

  function checkIndex(i, what) {
    if (!Number.isInteger(i) || i < 0 || i >= n) {
      throw new RangeError(
        `${what}: iteration must be an integer in 0..${n - 1}, got ${String(i)}`);
    }
  }
  function checkSize(a, what) {
    if (!(a instanceof Float32Array || a instanceof Float64Array)) {
      throw new TypeError(`${what} must be a Float32Array or Float64Array`);
    }
    if (size < 0) size = a.length;
    if (a.length !== size) {
      throw new RangeError(`${what} has ${a.length} elements, expected ${size}`);
    }
  }

  return {
    name,
    steps,
    timesteps: timesteps.slice(),
    initNoiseSigma: table.init_noise_sigma,

    /** Image-to-image's first latents: a * clean + b * noise (the restart's add_noise). */
    addNoise(clean, noise) {
      if (!restart) throw new TypeError("addNoise: this scheduler was made without a start");
      checkSize(clean, "clean latents");
      checkSize(noise, "noise");
      const [a, b] = restart.noise;
      const out = new Float32Array(clean.length);
      for (let j = 0; j < clean.length; j++) out[j] = a * clean[j] + b * noise[j];
      return out;
    },

    /**
     * The clean latents the model output of iteration i points at (diffusers'
     * pred_original_sample), for a preview: the model input s = inputScale * x is
     * sqrt(abar) * x0 + sqrt(1 - abar) * noise, with sqrt(abar) the input scale where the
     * sampler scales its input (1 / sqrt(sigma^2 + 1)) and the schedule's alphas_cumprod at the
     * timestep where it does not. Null when schedules.json predates these fields.
     */
    denoised(modelOutput, i, sample) {
      checkIndex(i, "denoised");
      if (!alphasCumprod) return null;
      const k = inputScale[i];
      const root = k !== 1 ? k : Math.sqrt(alphasCumprod[Math.round(timesteps[i])]);
      const rest = Math.sqrt(1 - root * root);
      const out = new Float32Array(sample.length);
      for (let j = 0; j < sample.length; j++) {
        const s = sample[j] * k;
        out[j] = vPrediction ? root * s - rest * modelOutput[j] : (s - rest * modelOutput[j]) / root;
      }
      return out;
    },

    scaleModelInput(latents, i) {
      checkIndex(i, "scaleModelInput");
      checkSize(latents, "latents");
      const k = inputScale[i];
      const out = new Float32Array(latents.length);
      for (let j = 0; j < latents.length; j++) out[j] = latents[j] * k;
      return out;
    },

    /**
     * x[i+1] from the model output and sample of iteration i. A stochastic sampler's step also
     * adds noise: `noise` is the step's Float32Array (web/src/rng.js stepNoise), or a function
     * returning it, called only for the steps that add noise.
     */
    step(modelOutput, i, sample, noise = null) {
      checkIndex(i, "step");
      if (i !== next) {
        throw new RangeError(
          `step: expected iteration ${next}, got ${i} (steps run in order, once each)`);
      }
      checkSize(sample, "sample");
      checkSize(modelOutput, "modelOutput");
      xs[i] = Float64Array.from(sample);
      es[i] = Float64Array.from(modelOutput);
      const acc = new Float64Array(size);
      for (const [terms, hist] of [[update[i].x, xs], [update[i].e, es]]) {
        for (const [b, c] of terms) {
          const a = hist[i - b];
          for (let j = 0; j < size; j++) acc[j] += c * a[j];
        }
      }
      if (update[i].z !== undefined) {
        const z = typeof noise === "function" ? noise() : noise;
        if (z === null || z === undefined) {
          throw new TypeError(`step: ${name} adds noise at iteration ${i}; pass its step noise`);
        }
        checkSize(z, "noise");
        const c = update[i].z;
        for (let j = 0; j < size; j++) acc[j] += c * z[j];
      }
      for (let j = 0; j <= i; j++) {
        if (lastX[j] <= i) xs[j] = null;
        if (lastE[j] <= i) es[j] = null;
      }
      next = i + 1;
      return Float32Array.from(acc);
    },
  };
}
