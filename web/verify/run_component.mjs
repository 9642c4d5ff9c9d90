// Run one compiled component (wasm + WGSL) under WebGPU in Node and write its output.
//
//   node web/verify/run_component.mjs job.json
//
// job.json: {"wasm": path, "params": params.safetensors, "inputs": [{"path", "shape", "dtype"}],
//            "output": path}. WebGPU comes from npm `webgpu` (Dawn); the runtime is tvmjs
// (npm @mlc-ai/web-runtime, the TVM 0.27 JS runtime). Params are read from the safetensors
// file that emit wrote, in the order its metadata lists ("order": the order `main` takes
// them). Prints one JSON line: adapter, output shape and dtype.
import fs from "node:fs";
import { createRequire } from "node:module";
import { create, globals } from "webgpu";

const require = createRequire(import.meta.url);
const tvmjs = require("@mlc-ai/web-runtime");

function fail(message) {
  console.error(`run_component: ${message}`);
  process.exit(2);
}

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
Object.assign(globalThis, globals);
const gpu = create([]);
const adapter = await gpu.requestAdapter();
if (!adapter) fail("no WebGPU adapter; fix: install a Vulkan driver (mesa-vulkan-drivers)");
const device = await adapter.requestDevice({
  requiredLimits: {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
  },
});

// NOTE: a failed shader or dispatch does not throw; collect them, and fail the run below.
const gpuErrors = [];
device.addEventListener("uncapturederror", (e) => gpuErrors.push(e.error.message));

const wasm = fs.readFileSync(job.wasm);
const tvm = await tvmjs.instantiate(
  wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength),
  tvmjs.createPolyfillWASI(), () => {});
tvm.initWebGPU(device);
const gpuDev = tvm.webgpu();

tvm.beginScope();
// safetensors: u64 header length, JSON header {name: {dtype, shape, data_offsets}}, data
const DTYPES = { F32: "float32", F16: "float16", I32: "int32", I64: "int64" };
const file = fs.readFileSync(job.params);
const headerLength = Number(file.readBigUInt64LE(0));
const header = JSON.parse(file.subarray(8, 8 + headerLength).toString("utf8"));
const base = 8 + headerLength;
const params = JSON.parse(header.__metadata__.order).map((name) => {
  const rec = header[name];
  if (!DTYPES[rec.dtype]) fail(`param ${name}: dtype ${rec.dtype} is not supported`);
  const [begin, end] = rec.data_offsets;
  const t = tvm.empty(rec.shape, DTYPES[rec.dtype], gpuDev);
  t.copyFromRawBytes(new Uint8Array(file.buffer, file.byteOffset + base + begin, end - begin));
  return t;
});
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
