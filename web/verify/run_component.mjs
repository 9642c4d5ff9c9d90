// Run one compiled component (wasm + WGSL) under WebGPU in Node and write its output.
//
//   node web/verify/run_component.mjs job.json
//
// job.json: {"wasm": path, "params": the params/ dir (tvmjs tensor cache), "manifests": the
//            manifest.json of the wasm's directory and, for a variant of an extra image size,
//            that of the variant whose params it shares (stages/emit.py), "inputs": [{"path",
//            "shape", "dtype"}], "output": path, "features": the WebGPU features a feature
//            variant needs (optional), "largest_buffer_bytes": the largest buffer a kernel binds
//            (optional)}.
// The component is loaded and run by the page's own module (web/src/model.js Component.load,
// then run), from files read off the disk and each checked against the component's
// manifest.json (web/src/params.js checkShard): a changed shard fails the run, naming it.
// An adapter without those features, or whose storage bindings are smaller (lavapipe's 128 MiB
// against the full-size float32 text encoder's 152 MB embedding table), cannot run the
// variant: the run prints {"skipped": why} and exits 3 (verify records it; the device bench
// checks such variants).
// WebGPU comes from npm `webgpu` (Dawn); the runtime is tvmjs (npm @mlc-ai/web-runtime, the
// TVM 0.27 JS runtime). Prints one JSON line: adapter, output shape and dtype.
import fs from "node:fs";
import path from "node:path";
import { create, globals } from "webgpu";
import { Component } from "../src/model.js";
import { checkShard } from "../src/params.js";

function fail(message) {
  console.error(`run_component: ${message}`);
  process.exit(2);
}

/** The component's files on disk, each checked against its manifest.json when read. */
class DiskFiles {
  constructor(dir, files) {
    this.dir = dir;
    this.files = files;
  }

  async bytes(rel) {
    const data = fs.readFileSync(path.join(this.dir, rel));
    return checkShard(rel, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), this.files[rel]);
  }

  async json(rel) {
    return JSON.parse(new TextDecoder().decode(await this.bytes(rel)));
  }
}

const TYPED = { float32: Float32Array, int32: Int32Array };

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
// the model's directory (dist/<model>/<target>/), which holds every variant's directory
const dir = path.dirname(path.dirname(job.manifests[0]));
const relative = (p) => {
  const rel = path.relative(dir, p).split(path.sep).join("/");
  if (rel.startsWith("..")) fail(`${p} is not in ${dir}`);
  return rel;
};
const variant = { library: relative(job.wasm), params: `${relative(job.params)}/tensor-cache.json` };
// every file the manifests list, by its path under `dir`
const listed = {};
for (const file of job.manifests) {
  const prefix = relative(path.dirname(file));
  for (const [rel, entry] of Object.entries(JSON.parse(fs.readFileSync(file, "utf8")).files)) {
    listed[`${prefix}/${rel}`] = entry;
  }
}

Object.assign(globalThis, globals);
// NOTE: dawn.node 0.6.2 crashes (segfault or a futex abort) when V8 collects the GPU, adapter
// or device objects while they are in use; a module-level const does not keep them alive.
// Pinning them on globalThis does (seen on the H200 with the NVIDIA driver).
const needed = job.features ?? [];
// NOTE: Dawn offers experimental features (subgroup matrices) only with allow_unsafe_apis
const gpu = (globalThis.websdGpu = create(needed.length ? ["enable-dawn-features=allow_unsafe_apis"] : []));
const adapter = (globalThis.websdAdapter = await gpu.requestAdapter());
if (!adapter) fail("no WebGPU adapter; fix: install a Vulkan driver (mesa-vulkan-drivers)");
const lacking = needed.filter((f) => !adapter.features.has(f));
const binding = adapter.limits.maxStorageBufferBindingSize;
if (job.largest_buffer_bytes > binding) lacking.push(`storage bindings of ${job.largest_buffer_bytes} bytes (it has ${binding})`);
if (lacking.length) {
  console.log(JSON.stringify({ skipped: `this machine's WebGPU adapter (${adapter.info?.description ?? "?"}) lacks ${lacking.join(", ")}` }));
  process.exit(3);
}
const device = (globalThis.websdDevice = await adapter.requestDevice({
  // float16 variants declare `enable f16;` in their WGSL
  requiredFeatures: [...new Set([...(adapter.features.has("shader-f16") ? ["shader-f16"] : []), ...needed])],
  requiredLimits: {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
  },
}));

// NOTE: a failed shader or dispatch does not throw; collect them, and fail the run below.
const gpuErrors = [];
device.addEventListener("uncapturederror", (e) => gpuErrors.push(e.error.message));

let component;
try {
  component = await Component.load({ name: path.basename(path.dirname(job.wasm)), variant,
    device, files: new DiskFiles(dir, listed) });
} catch (e) {
  fail(e.message);
}
const inputs = job.inputs.map((inp) => {
  const bytes = fs.readFileSync(inp.path);
  const Typed = TYPED[inp.dtype] ?? fail(`input ${inp.path}: dtype ${inp.dtype} is not supported`);
  const data = new Typed(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return { data, shape: inp.shape, dtype: inp.dtype };
});
const out = await component.run(inputs);
if (gpuErrors.length) fail(`${gpuErrors.length} WebGPU errors, first: ${gpuErrors[0]}`);
fs.writeFileSync(job.output, new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength));
console.log(JSON.stringify({ adapter: adapter.info?.description ?? "", shape: out.shape,
                             dtype: "float32" }));
process.exit(0);
