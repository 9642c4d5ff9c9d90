// variants.js: which of manifest.json's variants and files a flavor at an image size uses.
// Lookups only, so that the page's main module (app.js) reads them without pulling in the
// runtime that loads them (loader.js, model.js and tvmjs run in the model's worker).

export const COMPONENTS = [["textEncoder", "text_encoder"], ["unet", "unet"],
  ["vaeDecoder", "vae_decoder"], ["vaeEncoder", "vae_encoder"]];

/** The image sizes the build serves, [width, height] each, the default first. */
export function sizesOf(manifest) {
  return manifest.sizes ?? [[manifest.image_size, manifest.image_size]];
}

/** The manifest's variant name of a component in a flavor at an image size ([width, height],
 *  default the build's first): "unet-fp16", "unet-fp16-sm", "unet-768x512-fp16". The text
 *  encoder has no size: the same at every size. */
export function variantOf(manifest, component, flavor, size = sizesOf(manifest)[0]) {
  const hit = Object.entries(manifest.variants || {})
    .find(([, v]) => v.component === component && (v.flavor ?? v.precision) === flavor
      && (!v.size || (v.size[0] === size[0] && v.size[1] === size[1])));
  if (!hit) {
    throw new Error(`manifest.json has no ${flavor} ${component} at ${size[0]}x${size[1]}; ` +
      "rebuild the model");
  }
  return hit[0];
}

/** The parameter shards a flavor downloads: [{path, size}] (what the progress bar counts);
 *  every image size takes the same ones (an extra size's variants share the default's). */
export function shardsOf(manifest, flavor) {
  const out = [];
  for (const [, component] of COMPONENTS) {
    const v = manifest.variants[variantOf(manifest, component, flavor)];
    const dir = v.params.slice(0, v.params.lastIndexOf("/") + 1);
    for (const [path, entry] of Object.entries(manifest.files)) {
      if (path.startsWith(dir) && path.endsWith(".bin")) out.push({ path, size: entry.size });
    }
  }
  return out;
}
