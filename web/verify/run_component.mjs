// Run one compiled component (wasm + WGSL) under WebGPU in Node and write its output.
//
//   node web/verify/run_component.mjs job.json
//
// job.json: {"wasm": path, "params": the params/ dir (tvmjs tensor cache), "manifest": the
//            component's manifest.json, "inputs": [{"path", "shape", "dtype"}], "output": path,
//            "features": the WebGPU features a feature variant needs (optional),
//            "largest_buffer_bytes": the largest buffer a kernel binds (optional)}.
// An adapter without those features, or whose storage bindings are smaller (lavapipe's 128 MiB
// against the full-size float32 text encoder's 152 MB embedding table), cannot run the
// variant: the run prints {"skipped": why} and exits 3 (verify records it; the device bench
// checks such variants).
// WebGPU comes from npm `webgpu` (Dawn); the runtime is tvmjs (npm @mlc-ai/web-runtime, the
// TVM 0.27 JS runtime). Params go through the page's loader (web/src/params.js), which checks
// every shard against manifest.json: a changed shard fails the run, naming the shard.
// Prints one JSON line: adapter, output shape and dtype.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { create, globals } from "webgpu";
import { loadParams } from "../src/params.js";
import { submitInBatches } from "../src/submit.js";

const require = createRequire(import.meta.url);
const tvmjs = require("@mlc-ai/web-runtime");

function fail(message) {
  console.error(`run_component: ${message}`);
  process.exit(2);
}

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
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

const wasm = fs.readFileSync(job.wasm);
const tvm = await tvmjs.instantiate(
  wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength),
  tvmjs.createPolyfillWASI(), () => {});
tvm.initWebGPU(device);
submitInBatches(tvm);   // as the page runs it (web/src/model.js)
const gpuDev = tvm.webgpu();

const manifest = JSON.parse(fs.readFileSync(job.manifest, "utf8"));
const cache = JSON.parse(fs.readFileSync(path.join(job.params, "tensor-cache.json"), "utf8"));
const componentDir = path.dirname(job.params);
let params;
try {
  params = await loadParams(tvm, gpuDev, {
    cache, files: manifest.files, dir: path.basename(job.params),
    read: async (rel) => new Uint8Array(fs.readFileSync(path.join(componentDir, rel))),
  });
} catch (e) {
  fail(e.message);
}
tvm.beginScope();
const inputs = job.inputs.map((inp) => {
  const bytes = fs.readFileSync(inp.path);
  const t = tvm.empty(inp.shape, inp.dtype, gpuDev);
  t.copyFromRawBytes(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return t;
});
const vm = tvm.detachFromCurrentScope(tvm.createVirtualMachine(gpuDev));
const main = vm.getFunction("main");
const out = main(...inputs, ...params);
const host = tvm.empty(out.shape, out.dtype, tvm.cpu());
host.copyFrom(out);
await gpuDev.sync();
if (gpuErrors.length) fail(`${gpuErrors.length} WebGPU errors, first: ${gpuErrors[0]}`);
fs.writeFileSync(job.output, host.toRawBytes());
console.log(JSON.stringify({ adapter: adapter.info?.description ?? "", shape: out.shape,
                             dtype: out.dtype }));
tvm.endScope();
process.exit(0);
