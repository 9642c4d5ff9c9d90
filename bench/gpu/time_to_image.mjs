// Seconds from prompt to RGBA pixels with the page's own pipeline (web/src: gpu.js, loader.js,
// model.js, pipeline.js, the tokenizer), under Dawn in Node: the first image (shader compile and
// parameter upload included) and the steady ones after it.
//
//   node bench/gpu/time_to_image.mjs DIST OUT.json [--images 3] [--steps 20] [--guidance 7.5]
//        [--scheduler dpm++2m] [--prompt TEXT] [--seed 0] [--dawn-features LIST]
//        [--save-rgba PATH]   (the first image's raw RGBA bytes, to compare two builds' images)
//
// DIST is a built model directory (dist/<model>/webgpu, or one bench/gpu/fill_params.py filled
// on the GPU machine); it is served over HTTP from this process, as the page gets it, and every
// file is checked against manifest.json on the way in. The flavor (float16 on the matrix units,
// float16, float32) is the one gpu.js picks for the adapter. Writes {flavor, adapter,
// load_s, images: [{seconds, seconds_per_step, timings, rgba_mean}], first_image_s,
// steady_image_s (median of the images after the first)}.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";

const [dist, outPath, ...rest] = process.argv.slice(2);
if (!dist || !outPath) {
  console.error("usage: node bench/gpu/time_to_image.mjs DIST OUT.json [--images 3] ...");
  process.exit(2);
}
const opts = { images: 3, steps: 20, guidance: 7.5, scheduler: "dpm++2m", seed: 0,
  prompt: "a photograph of an astronaut riding a horse", "dawn-features": "", "save-rgba": "" };
for (let i = 0; i < rest.length; i += 2) {
  const key = rest[i].replace(/^--/, "");
  opts[key] = typeof opts[key] === "number" ? Number(rest[i + 1]) : rest[i + 1];
}

// The page's modules import their npm packages by name: from web/node_modules, or on the GPU
// machine from $WEBSD_NODE_MODULES, linked there as web/node_modules by run_on_device.sh.
const web = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..", "web");
const mod = (rel) => import(pathToFileURL(path.join(web, rel)).href);
const { openDevice } = await mod("src/gpu.js");
const { loadModel } = await mod("src/loader.js");
const { checkOptions } = await mod("src/options.js");
const { generate } = await mod("src/pipeline.js");
const { schedulerNames } = await mod("src/schedulers.js");
const { ModelFiles } = await mod("src/shards.js");
const { loadWebTokenizers } = await mod("test/web_tokenizers_node.mjs");
const require = createRequire(path.join(web, "package.json"));
const { create, globals } = require("webgpu");
Object.assign(globalThis, globals);

const server = http.createServer((req, res) => {
  const rel = decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/^\/+/, "");
  const file = path.resolve(dist, rel);
  if (!file.startsWith(path.resolve(dist)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-length": fs.statSync(file).size });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}/`;

const t0 = performance.now();
const manifest = await (await fetch(new URL("manifest.json", base))).json();
const files = new ModelFiles({ baseUrl: base, files: manifest.files });
const tables = await files.json(manifest.schedules);
const flags = opts["dawn-features"] ? [`enable-dawn-features=${opts["dawn-features"]}`] : [];
// NOTE: kept referenced: Dawn aborts the process once V8 collects its GPU object
globalThis.__websdGpu = create(flags);
const gpu = await openDevice(manifest, { gpu: globalThis.__websdGpu });
const model = await loadModel({ manifest, files, tables, gpu, Tokenizer: loadWebTokenizers() });
const loadSeconds = (performance.now() - t0) / 1000;
const report = { flavor: gpu.flavor, adapter: gpu.adapterInfo, options: opts, load_s: loadSeconds,
  component_load_s: { textEncoder: model.textEncoder.loadSeconds, unet: model.unet.loadSeconds,
    vaeDecoder: model.vaeDecoder.loadSeconds }, images: [] };
try {
  const checked = checkOptions({ prompt: opts.prompt, steps: opts.steps, guidance: opts.guidance,
    scheduler: opts.scheduler, seed: opts.seed }, manifest.contract, schedulerNames(tables));
  for (let i = 0; i < opts.images; i++) {
    const r = await generate(model, { ...checked, seed: checked.seed + i });
    if (i === 0 && opts["save-rgba"]) fs.writeFileSync(opts["save-rgba"], r.rgba);
    let sum = 0;
    for (let j = 0; j < r.rgba.length; j++) sum += r.rgba[j];
    report.images.push({ seconds: r.seconds, seconds_per_step: r.secondsPerStep,
      text_encoder_s: r.timings.textEncoder, vae_decoder_s: r.timings.vaeDecoder,
      width: r.width, height: r.height, rgba_mean: sum / r.rgba.length });
    console.error(`time_to_image: image ${i + 1}: ${r.seconds.toFixed(2)} s ` +
      `(${(r.secondsPerStep * 1000).toFixed(1)} ms/step, ${gpu.flavor})`);
  }
} finally {
  model.dispose();
  server.close();
}
const seconds = report.images.map((im) => im.seconds);
report.first_image_s = loadSeconds + seconds[0];
const steady = seconds.slice(1).sort((a, b) => a - b);
report.steady_image_s = steady.length ? steady[Math.floor(steady.length / 2)] : null;
fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
console.log(JSON.stringify({ flavor: report.flavor, first_image_s: report.first_image_s,
  steady_image_s: report.steady_image_s }));
process.exit(0);
