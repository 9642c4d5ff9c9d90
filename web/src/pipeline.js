// pipeline.js: text -> image with the loaded components; the page's denoising loop.
//
// The same loop as the Python runner (stages/runtime/generate.py), so that one seed gives one image in
// both; the float32 rounding of each step is written out (Math.fround / Float32Array stores)
// where numpy rounds:
//
//   ids     = [tokens(negative prompt), tokens(prompt)]        row 0 unconditional
//   ehs     = text_encoder(ids)                                (2, 77, D)
//   x       = gaussian(seed, 4*h*w) * initNoiseSigma           NCHW, web/src/rng.js
//   for i:  e = unet([s, s], t_i, ehs) with s = scaleModelInput(x, i)
//           guided = e[0] + g * (e[1] - e[0])                  guidance on the CPU, at run time
//           x = step(guided, i, x)                             web/src/schedulers.js
//   image   = vae_decoder(x / scaling_factor)
//
// Each component gives its activations back once it is done for the image (model.js
// releaseActivations), so the GPU memory of an image is the parameters plus the largest
// component's activations, not the sum of the three.
//
// Guidance runs on the CPU because it is a handful of multiply-adds on the small latents, and
// it keeps the guidance scale (and the negative prompt) a run-time input of an unchanged UNet.

import { imageToRGBA } from "./image.js";
import { gaussian, stepNoise } from "./rng.js";
import { createScheduler } from "./schedulers.js";

export function cancelled() {
  return new DOMException("Generation cancelled", "AbortError");
}

/**
 * model: { tokenizer (ClipTokenizer), tables (schedules.json), textEncoder, unet, vaeDecoder
 *          (model.js Components), latentShape [1, C, h, w], imageSize, scalingFactor,
 *          checkGpu() (throws if WebGPU reported an error) }
 * opts: checked options (options.js). onStep({step, total, seconds, latents}) after each UNet
 * call. signal: an AbortSignal (Cancel), honoured between GPU calls.
 * Resolves to { rgba (Uint8ClampedArray), width, height, seconds, secondsPerStep, timings }.
 */
export async function generate(model, opts, { signal, onStep } = {}) {
  const stop = () => { if (signal?.aborted) throw cancelled(); };
  const t0 = performance.now();
  const { tokenizer, textEncoder, unet, vaeDecoder } = model;
  const scheduler = createScheduler(model.tables, opts.scheduler, opts.steps);
  const timings = {};

  const len = tokenizer.special.maxLength;
  const ids = new Int32Array(2 * len);
  ids.set(tokenizer.encode(opts.negativePrompt), 0);
  ids.set(tokenizer.encode(opts.prompt), len);
  let t = performance.now();
  const text = await textEncoder.run([{ data: ids, shape: [2, len], dtype: "int32" }]);
  textEncoder.releaseActivations();
  model.checkGpu();
  timings.textEncoder = (performance.now() - t) / 1000;
  stop();

  const [, channels, h, w] = model.latentShape;
  const n = channels * h * w;
  // the embeddings are the same for every step: upload them once
  const ehs = unet.upload(text.data, text.shape);
  let x;
  const stepSeconds = [];
  try {
    const noise = gaussian(opts.seed, n);
    const sigma = Math.fround(scheduler.initNoiseSigma);
    x = new Float32Array(n);
    for (let j = 0; j < n; j++) x[j] = noise[j] * sigma;
    const g = Math.fround(opts.guidance);
    const total = scheduler.timesteps.length;
    for (let i = 0; i < total; i++) {
      stop();
      t = performance.now();
      const s = scheduler.scaleModelInput(x, i);
      const batch = new Float32Array(2 * n);
      batch.set(s, 0);
      batch.set(s, n);
      const e = (await unet.run([
        { data: batch, shape: [2, channels, h, w] },
        { data: new Float32Array([scheduler.timesteps[i]]), shape: [] },
        ehs,
      ])).data;
      model.checkGpu();
      const guided = new Float32Array(n);
      for (let j = 0; j < n; j++) guided[j] = e[j] + Math.fround(g * Math.fround(e[n + j] - e[j]));
      x = scheduler.step(guided, i, x, () => stepNoise(opts.seed, i, n));
      stepSeconds.push((performance.now() - t) / 1000);
      onStep?.({ step: i + 1, total, seconds: stepSeconds[i], latents: x });
    }
  } finally {
    ehs.dispose();
    unet.releaseActivations();
  }
  stop();

  t = performance.now();
  const k = Math.fround(model.scalingFactor);
  const scaled = new Float32Array(n);
  for (let j = 0; j < n; j++) scaled[j] = x[j] / k;
  const image = await vaeDecoder.run([{ data: scaled, shape: model.latentShape }]);
  vaeDecoder.releaseActivations();
  model.checkGpu();
  timings.vaeDecoder = (performance.now() - t) / 1000;
  const [, , height, width] = image.shape;
  const secondsPerStep = stepSeconds.reduce((a, b) => a + b, 0) / stepSeconds.length;
  timings.steps = stepSeconds;
  return { rgba: imageToRGBA(image.data, height, width), width, height,
    seconds: (performance.now() - t0) / 1000, secondsPerStep, timings };
}
