// How long a WGSL compute shader takes to its first dispatch's end, alone, under WebGPU in
// Node (npm `webgpu`, Dawn). On lavapipe that is mostly compiling it: Mesa's LLVM JIT runs when
// a pipeline is first dispatched, not when it is created.
//
//   node web/test/first_dispatch.mjs SHADER.wgsl WORKGROUPS > {"createMs", "firstDispatchMs"}
//
// Every storage binding gets a zeroed 1 MiB buffer (a uniform one 256 bytes) (the timing does not depend on the data);
// set MESA_SHADER_CACHE_DISABLE=true to measure a cold compile.
import fs from "node:fs";
import { create, globals } from "webgpu";

Object.assign(globalThis, globals);
const [shaderPath, workgroups = "1"] = process.argv.slice(2);
const code = fs.readFileSync(shaderPath, "utf8");
const entryPoint = /@compute[^]*?fn (\w+)\(/.exec(code)[1];
// NOTE: kept on globalThis: dawn.node crashes when V8 collects these while they are in use
const gpu = (globalThis.firstDispatchGpu = create([]));
const adapter = (globalThis.firstDispatchAdapter = await gpu.requestAdapter());
const device = (globalThis.firstDispatchDevice = await adapter.requestDevice({
  requiredFeatures: adapter.features.has("shader-f16") ? ["shader-f16"] : [] }));
const errors = [];
device.addEventListener("uncapturederror", (e) => errors.push(e.error.message));

const t0 = performance.now();
const pipeline = device.createComputePipeline({ layout: "auto",
  compute: { module: device.createShaderModule({ code }), entryPoint } });
const t1 = performance.now();
const entries = [];
for (const m of code.matchAll(/@binding\((\d+)\) var<(storage|uniform)[^>]*> (\w+)/g)) {
  if (!new RegExp(`\\b${m[3]}\\b`).test(code.slice(code.indexOf("@compute")))) continue;
  const usage = m[2] === "uniform" ? GPUBufferUsage.UNIFORM : GPUBufferUsage.STORAGE;
  const size = m[2] === "uniform" ? 256 : 1 << 20;
  entries.push({ binding: Number(m[1]), resource: { buffer: device.createBuffer({ size, usage }) } });
}
const encoder = device.createCommandEncoder();
const pass = encoder.beginComputePass();
pass.setPipeline(pipeline);
pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }));
pass.dispatchWorkgroups(Number(workgroups));
pass.end();
device.queue.submit([encoder.finish()]);
await device.queue.onSubmittedWorkDone();
const t2 = performance.now();
if (errors.length) {
  console.error(`first_dispatch: ${errors[0]}`);
  process.exit(2);
}
console.log(JSON.stringify({ adapter: adapter.info?.description ?? "", createMs: t1 - t0,
  firstDispatchMs: t2 - t1 }));
process.exit(0);
