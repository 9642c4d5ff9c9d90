// image.js: decoder output and latents as canvas pixels.

/**
 * The VAE decoder's (1, 3, H, W) float image, about [-1, 1], as RGBA bytes for an ImageData.
 * Rounded as stages/runtime/generate.py to_pixels does, step by step in float32 (Math.fround), so the
 * page and the Python runner give the same bytes for the same floats.
 */
export function imageToRGBA(image, height, width) {
  const plane = height * width;
  const rgba = new Uint8ClampedArray(plane * 4);
  const half = Math.fround(0.5), full = Math.fround(255);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      let u = Math.fround(Math.fround(image[c * plane + i] / 2) + half);
      u = u < 0 ? 0 : u > 1 ? 1 : u;
      rgba[i * 4 + c] = Math.floor(Math.fround(Math.fround(u * full) + half));
    }
  }
  for (let i = 0; i < plane; i++) rgba[i * 4 + 3] = 255;
  return rgba;
}

// What each latent channel adds to R, G and B: a linear fit of SD 1.x / 2.x's VAE decoder
// (its latents, as the sampler holds them), the approximation common SD front ends preview with.
const LATENT_RGB = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473]];

/**
 * A live look at the latents (1, C, h, w) while denoising, h x w RGBA: the linear projection
 * above from about [-1, 1] to bytes. Not the decoded image (that needs the VAE), but its colours
 * and shapes, step by step. Latents of another channel count show channels 0-2, each stretched
 * to its own range.
 */
export function latentPreviewRGBA(latents, height, width) {
  const plane = height * width;
  const channels = latents.length / plane;
  const rgba = new Uint8ClampedArray(plane * 4);
  for (let i = 0; i < plane; i++) rgba[i * 4 + 3] = 255;
  if (channels === LATENT_RGB.length) {
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        let v = 0;
        for (let k = 0; k < channels; k++) v += LATENT_RGB[k][c] * latents[k * plane + i];
        rgba[i * 4 + c] = (v + 1) * 127.5;   // Uint8ClampedArray clamps and rounds
      }
    }
    return rgba;
  }
  for (let c = 0; c < Math.min(3, channels); c++) {
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < plane; i++) {
      const v = latents[c * plane + i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const k = hi > lo ? 255 / (hi - lo) : 0;
    for (let i = 0; i < plane; i++) rgba[i * 4 + c] = (latents[c * plane + i] - lo) * k;
  }
  return rgba;
}
