// The page's own modules (gpu.js, shards.js, loader.js, model.js, pipeline.js) in Node, on
// WebGPU from npm `webgpu` (Dawn on Mesa lavapipe), which, unlike CPU WebGPU in Chromium,
// offers shader-f16: the page's float16 path, the one real GPUs take.
//
//   node web/test/pipeline_node.mjs ORIGIN JOB.json > report.json
//
// ORIGIN serves the built model directory; JOB.json: {images: [{name, opts}]}. Prints
// {precision, adapter, images: [{name, ok, pixels (RGBA), width, height, secondsPerStep}]}.
// Only the DOM (app.js) and the Cache API (absent in Node: every file comes from the network)
// are left out.
import fs from "node:fs";
import { create, globals } from "webgpu";
import { openDevice } from "../src/gpu.js";
import { loadModel } from "../src/loader.js";
import { checkOptions } from "../src/options.js";
import { generate } from "../src/pipeline.js";
import { schedulerNames } from "../src/schedulers.js";
import { ModelFiles } from "../src/shards.js";
import { ClipTokenizer } from "../src/tokenizer.js";
import { loadWebTokenizers } from "./web_tokenizers_node.mjs";

const [origin, jobPath] = process.argv.slice(2);
const job = JSON.parse(fs.readFileSync(jobPath, "utf8"));
Object.assign(globalThis, globals);   // GPUBufferUsage etc., which tvmjs reads as globals

const base = `${origin}/`;
const manifest = await (await fetch(new URL("manifest.json", base))).json();
const files = new ModelFiles({ baseUrl: base, files: manifest.files });
const tables = await files.json(manifest.schedules);
// NOTE: keep Dawn's GPU object referenced (as navigator.gpu is in a page); once collected, Dawn
// aborts the process at a later tick (std::system_error).
const navigatorGpu = create([]);
const gpu = await openDevice(manifest, { gpu: navigatorGpu });
const report = { precision: gpu.precision, adapter: gpu.adapterInfo, images: [] };
const Tokenizer = loadWebTokenizers();
const model = await loadModel({ manifest, files, tables, gpu,
  loadTokenizer: (json, config) => ClipTokenizer.load(Tokenizer, json, config) });
try {
  for (const { name, opts } of job.images) {
    const r = await generate(model, checkOptions(opts, manifest.contract, schedulerNames(tables)));
    report.images.push({ name, ok: true, pixels: Array.from(r.rgba), width: r.width,
      height: r.height, seconds: r.seconds, secondsPerStep: r.secondsPerStep });
  }
  report.files = files.log.map(({ path, source }) => ({ path, source }));
} finally {
  model.dispose();
}
// Dawn keeps the event loop alive: exit, once the report is through the pipe
process.stdout.write(JSON.stringify(report), () => process.exit(0));
