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

/**
 * A rough look at the latents (1, 4, h, w) while denoising: channels 0-2 as RGB, each stretched
 * to its own min..max. Not the decoded image (that needs the VAE), only a sign of progress.
 */
export function latentPreviewRGBA(latents, height, width) {
  const plane = height * width;
  const rgba = new Uint8ClampedArray(plane * 4);
  for (let c = 0; c < 3; c++) {
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < plane; i++) {
      const v = latents[c * plane + i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const k = hi > lo ? 255 / (hi - lo) : 0;
    for (let i = 0; i < plane; i++) rgba[i * 4 + c] = (latents[c * plane + i] - lo) * k;
  }
  for (let i = 0; i < plane; i++) rgba[i * 4 + 3] = 255;
  return rgba;
}
