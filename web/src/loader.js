// loader.js: everything a generation needs, loaded once: tokenizer, the four components of one
// flavor (gpu.js), their parameters. What to load comes from manifest.json alone, so one page
// bundle serves every model and image size the build produces.

import { Component } from "./model.js";
import { COMPONENTS, sizesOf, variantOf } from "./variants.js";

/**
 * Load the model for `gpu` (gpu.js openDevice result) through `files` (shards.js ModelFiles).
 * loadTokenizer(tokenizerJsonBytes, tokenizerConfig) -> a ClipTokenizer (tokenizer.js), whose
 * Tokenizer class the caller brings (the page's worker and Node load it differently).
 * onShard({path, bytes, index, count}) after each shard is on the GPU;
 * onPhase({phase, component, done?, total?}) as each component loads (model.js Component.load).
 * size: [width, height], one of sizesOf(manifest) (default the first): the UNet and VAE
 * variants built for it. A size whose kernels bind larger buffers than the device allows is
 * refused before anything loads.
 * Resolves to the `model` that pipeline.js generate() takes, plus dispose().
 */
export async function loadModel({ manifest, files, tables, gpu, loadTokenizer, onShard, onPhase,
  size = sizesOf(manifest)[0] }) {
  if (typeof manifest.vae_scaling_factor !== "number") {
    // NOTE: no default: SD v1 uses 0.18215, SD 2 and SDXL others; a wrong one gives a grey image
    throw new Error("manifest.json has no vae_scaling_factor; rebuild the model with the " +
      "current package stage (doit build target=webgpu)");
  }
  const names = Object.fromEntries(COMPONENTS.map(([key, component]) =>
    [key, variantOf(manifest, component, gpu.flavor, size)]));
  const binding = gpu.limits?.maxStorageBufferBindingSize;
  for (const name of Object.values(names)) {
    const need = manifest.variants[name].largest_buffer_bytes;
    if (binding && need > binding) {
      throw new Error(`${size[0]}x${size[1]} needs GPU buffers of ${(need / 2 ** 20).toFixed(0)} ` +
        `MiB (${name}); this GPU binds at most ${(binding / 2 ** 20).toFixed(0)} MiB. Pick a ` +
        "smaller size.");
    }
  }
  const decoder = manifest.variants[names.vaeDecoder];
  const tokenizer = await loadTokenizer(await files.bytes(manifest.tokenizer),
    await files.json(manifest.tokenizer_config));
  const model = {
    tokenizer, tables, precision: gpu.precision, flavor: gpu.flavor,
    latentShape: (decoder.inputs ?? manifest.inputs.vae_decoder).latents[0].slice(),
    // 2: classifier-free guidance; 1: a guidance-free model (the prompt alone)
    guidanceBatch: manifest.inputs.unet.sample[0][0],
    imageSize: size.slice(),   // [width, height]
    scalingFactor: manifest.vae_scaling_factor,
    checkGpu() {
      if (gpu.errors.length) {
        throw new Error(`WebGPU reported ${gpu.errors.length} error(s); the image would be ` +
          `wrong. First: ${gpu.errors[0]}`);
      }
    },
    // NOTE: disposing a tvmjs instance destroys the shared device, so the device goes with the
    // model (closed first, so that its loss is not reported as an error).
    dispose() {
      gpu.close();
      for (const [key] of COMPONENTS) model[key]?.dispose();
      tokenizer.dispose();
    },
  };
  try {
    for (const [key, component] of COMPONENTS) {
      const name = names[key];
      model[key] = await Component.load({ name, variant: manifest.variants[name],
        device: gpu.device, files, onShard,
        onPhase: onPhase && ((p) => onPhase({ ...p, component })) });
    }
    model.checkGpu();
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
