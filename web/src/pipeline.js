// pipeline.js: text (and an image) -> image with the loaded components; the page's denoising
// loop.
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
// Image-to-image (opts.initImage): the VAE encoder's moments of the image give the clean
// latents (encoderLatents: a sample drawn with the seeded generator's encoder stream, times
// scaling_factor); the loop runs the end of the schedule from firstIteration(steps, strength),
// starting from addNoise(clean, gaussian(seed)). A guidance-free model (its UNet built at batch
// 1) runs the prompt alone and uses the prediction as it is.
//
// Each component gives its activations back once it is done for the image (model.js
// releaseActivations), so the GPU memory of an image is the parameters plus the largest
// component's activations, not the sum of the three.
//
// Previews: onStep gets the latents after every step (the page draws their linear RGB
// projection); onPreview gets the VAE decoder's image of the clean latents the step's model
// output points at (schedulers.js denoised), decoded while the time previews take stays within
// PREVIEW_SHARE of the loop's: every few steps where the decoder is cheap next to a step, rarely
// where it is not (SD v1.5 on the H200: a decode costs about four UNet steps). The UNet gives
// its activations back before such a decode, so an image's GPU memory stays what it was.
//
// Guidance runs on the CPU because it is a handful of multiply-adds on the small latents, and
// it keeps the guidance scale (and the negative prompt) a run-time input of an unchanged UNet.

import { imageToRGBA } from "./image.js";
import { encoderNoise, gaussian, stepNoise } from "./rng.js";
import { createScheduler, firstIteration } from "./schedulers.js";

export const PREVIEW_SHARE = 0.25;

export function cancelled() {
  return new DOMException("Generation cancelled", "AbortError");
}

/**
 * RGBA bytes (an ImageData's, H x W) -> the VAE encoder's input (1, 3, H, W) in [-1, 1]:
 * pixel / 255 * 2 - 1 in float32, as stages/runtime/generate.py image_input.
 */
export function imageInput(rgba, height, width) {
  const plane = height * width;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      out[c * plane + i] = Math.fround(Math.fround(rgba[i * 4 + c] / 255) * 2 - 1);
    }
  }
  return out;
}

/**
 * The encoder's moments (1, 2C, h, w) -> the clean latents: mean + exp(logvar / 2) * noise in
 * float64 (logvar clipped to -30..20), rounded to float32, times the scaling factor in float32;
 * as stages/runtime/generate.py encoder_latents.
 */
export function encoderLatents(moments, seed, scalingFactor) {
  const n = moments.length / 2;
  const noise = encoderNoise(seed, n);
  const k = Math.fround(scalingFactor);
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const logvar = Math.min(Math.max(moments[n + j], -30), 20);
    out[j] = Math.fround(Math.fround(moments[j] + Math.exp(0.5 * logvar) * noise[j]) * k);
  }
  return out;
}

/**
 * model: { tokenizer (ClipTokenizer),
 *          tables (schedules.json), textEncoder, unet, vaeDecoder, vaeEncoder (model.js Components), latentShape [1, C, h, w], imageSize [w, h],
 *          scalingFactor, guidanceBatch (2, or 1 for a guidance-free model),
 *          checkGpu() (throws if WebGPU reported an error) }
 * opts: checked options (options.js); opts.initImage: image-to-image from these RGBA bytes
 * (at imageSize) at opts.strength. onStep({step, total, seconds, latents}) after
 * each UNet call; onPreview({step, total, seconds, rgba, width, height}) after the steps whose
 * clean latents were decoded (see above). signal: an AbortSignal (Cancel), honoured between GPU
 * calls. Resolves to { rgba (Uint8ClampedArray), width, height, seconds, secondsPerStep,
 * timings (timings.previews: the seconds of each decoded preview) }.
 */
export async function generate(model, opts, { signal, onStep, onPreview } = {}) {
  const stop = () => { if (signal?.aborted) throw cancelled(); };
  const t0 = performance.now();
  const { tokenizer, textEncoder, unet } = model;
  const batch = model.guidanceBatch;
  const start = opts.initImage ? firstIteration(opts.steps, opts.strength) : null;
  const scheduler = createScheduler(model.tables, opts.scheduler, opts.steps, start);
  const timings = {};

  const len = tokenizer.special.maxLength;
  const ids = new Int32Array(batch * len);
  if (batch === 2) ids.set(tokenizer.encode(opts.negativePrompt), 0);
  ids.set(tokenizer.encode(opts.prompt), (batch - 1) * len);
  let t = performance.now();
  const text = await textEncoder.run([{ data: ids, shape: [batch, len], dtype: "int32" }]);
  textEncoder.releaseActivations();
  model.checkGpu();
  timings.textEncoder = (performance.now() - t) / 1000;
  stop();

  const [, channels, h, w] = model.latentShape;
  const n = channels * h * w;
  let clean = null;
  if (opts.initImage) {
    t = performance.now();
    const [width, height] = model.imageSize;
    const moments = await model.vaeEncoder.run([
      { data: imageInput(opts.initImage, height, width), shape: [1, 3, height, width] }]);
    model.vaeEncoder.releaseActivations();
    model.checkGpu();
    clean = encoderLatents(moments.data, opts.seed, model.scalingFactor);
    timings.vaeEncoder = (performance.now() - t) / 1000;
    stop();
  }
  // the embeddings are the same for every step: upload them once
  const ehs = unet.upload(text.data, text.shape);
  let x;
  const stepSeconds = [];
  const previews = timings.previews = [];
  try {
    const noise = gaussian(opts.seed, n);
    if (clean) {
      x = scheduler.addNoise(clean, noise);
    } else {
      const sigma = Math.fround(scheduler.initNoiseSigma);
      x = new Float32Array(n);
      for (let j = 0; j < n; j++) x[j] = noise[j] * sigma;
    }
    const g = Math.fround(opts.guidance);
    const total = scheduler.timesteps.length;
    for (let i = 0; i < total; i++) {
      stop();
      t = performance.now();
      const s = scheduler.scaleModelInput(x, i);
      const sample = new Float32Array(batch * n);
      for (let b = 0; b < batch; b++) sample.set(s, b * n);
      const e = (await unet.run([
        { data: sample, shape: [batch, channels, h, w] },
        { data: new Float32Array([scheduler.timesteps[i]]), shape: [] },
        ehs,
      ])).data;
      model.checkGpu();
      let guided = e;
      if (batch === 2) {
        guided = new Float32Array(n);
        for (let j = 0; j < n; j++) guided[j] = e[j] + Math.fround(g * Math.fround(e[n + j] - e[j]));
      }
      const clean = onPreview && i < total - 1 && previewDue(stepSeconds, previews, i)
        ? scheduler.denoised(guided, i, x) : null;
      x = scheduler.step(guided, i, x, () => stepNoise(opts.seed, i, n));
      stepSeconds.push((performance.now() - t) / 1000);
      onStep?.({ step: i + 1, total, seconds: stepSeconds[i], latents: x });
      if (clean) {
        stop();
        t = performance.now();
        unet.releaseActivations();
        const image = await decode(model, clean);
        previews.push((performance.now() - t) / 1000);
        onPreview({ step: i + 1, total, seconds: previews.at(-1), ...image });
      }
    }
  } finally {
    ehs.dispose();
    unet.releaseActivations();
  }
  stop();

  t = performance.now();
  const { rgba, width, height } = await decode(model, x);
  timings.vaeDecoder = (performance.now() - t) / 1000;
  const secondsPerStep = stepSeconds.reduce((a, b) => a + b, 0) / stepSeconds.length;
  timings.steps = stepSeconds;
  return { rgba, width, height, seconds: (performance.now() - t0) / 1000, secondsPerStep, timings };
}

/** Whether a decoded preview after iteration i keeps the previews' time (the last one's as
 *  the estimate; before any, two mean steps) within PREVIEW_SHARE of the loop's so far. */
function previewDue(stepSeconds, previews, i) {
  const sum = (a) => a.reduce((s, v) => s + v, 0);
  if (i === 0) return false;   // no step time measured yet
  const estimate = previews.length ? previews.at(-1) : 2 * sum(stepSeconds) / stepSeconds.length;
  return sum(previews) + estimate <= PREVIEW_SHARE * (sum(stepSeconds) + sum(previews));
}

/** Latents (as the sampler holds them) -> the VAE decoder's image as RGBA bytes. */
async function decode(model, latents) {
  const k = Math.fround(model.scalingFactor);
  const scaled = new Float32Array(latents.length);
  for (let j = 0; j < latents.length; j++) scaled[j] = latents[j] / k;
  const image = await model.vaeDecoder.run([{ data: scaled, shape: model.latentShape }]);
  model.vaeDecoder.releaseActivations();
  model.checkGpu();
  const [, , height, width] = image.shape;
  return { rgba: imageToRGBA(image.data, height, width), width, height };
}
