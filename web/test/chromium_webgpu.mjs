// What WebGPU headless Chromium offers on this machine, per route (see chromium.mjs).
//
//   node web/test/chromium_webgpu.mjs [swiftshader|lavapipe ...]   (default: both)
//
// Prints one JSON object: for each route the adapter info, its features (shader-f16?), the
// limits that bound our buffers and kernels, whether a device can be made, whether
// Float16Array, crypto.subtle and the Cache API exist on http://127.0.0.1, and timings
// (launch, page load, requestAdapter + requestDevice). The page's design reads these.
import { launch, ROUTES, serve } from "./chromium.mjs";

const routes = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(ROUTES);

// Runs in the page (page.evaluate sends only this function's text, so all it uses is inside).
async function probe(adapterOptions) {
  // The speed of CPU WebGPU, a naive fp32 N x N x N matmul (16x16 threads,
  // one output each), best of 3 after a warm-up, submit to readback.
  async function matmulMs(device, n) {
    const module = device.createShaderModule({ code: `
      @group(0) @binding(0) var<storage, read> a: array<f32>;
      @group(0) @binding(1) var<storage, read> b: array<f32>;
      @group(0) @binding(2) var<storage, read_write> c: array<f32>;
      @compute @workgroup_size(16, 16) fn main(@builtin(global_invocation_id) g: vec3u) {
        var acc = 0.0;
        for (var k = 0u; k < ${n}u; k++) { acc += a[g.y * ${n}u + k] * b[k * ${n}u + g.x]; }
        c[g.y * ${n}u + g.x] = acc;
      }` });
    const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    const size = n * n * 4;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const [a, b, c] = [0, 1, 2].map(() => device.createBuffer({ size, usage }));
    const ones = new Float32Array(n * n).fill(1);
    device.queue.writeBuffer(a, 0, ones);
    device.queue.writeBuffer(b, 0, ones);
    const read = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0),
      entries: [a, b, c].map((buffer, binding) => ({ binding, resource: { buffer } })) });
    let best = Infinity;
    for (let i = 0; i < 4; i++) {
      const t0 = performance.now();
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(n / 16, n / 16);
      pass.end();
      enc.copyBufferToBuffer(c, 0, read, 0, 4);
      device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const v = new Float32Array(read.getMappedRange())[0];
      read.unmap();
      if (v !== n) throw new Error(`matmul gave ${v}, expected ${n}`);
      if (i > 0) best = Math.min(best, performance.now() - t0);
    }
    return Math.round(best);
  }

  const out = {
    secureContext: window.isSecureContext,
    float16Array: typeof Float16Array === "function",
    cryptoSubtle: typeof crypto?.subtle?.digest === "function",
    cacheApi: typeof caches?.open === "function",
    navigatorGpu: !!navigator.gpu,
  };
  if (out.cacheApi) {   // exists is not enough: opening a cache must work on this origin
    try {
      const cache = await caches.open("websd-probe");
      await cache.put("/probe", new Response("ok"));
      out.cacheApiWorks = (await (await cache.match("/probe")).text()) === "ok";
      await caches.delete("websd-probe");
    } catch (e) {
      out.cacheApiWorks = `${e.name}: ${e.message}`;
    }
  }
  if (!navigator.gpu) return out;
  const t0 = performance.now();
  const adapter = await navigator.gpu.requestAdapter(adapterOptions);
  out.requestAdapterMs = Math.round(performance.now() - t0);
  if (!adapter) return out;
  const info = adapter.info || {};
  out.adapter = { vendor: info.vendor, architecture: info.architecture, device: info.device,
    description: info.description, featureLevel: adapter.featureLevel,
    isFallbackAdapter: info.isFallbackAdapter ?? adapter.isFallbackAdapter };
  out.features = [...adapter.features].sort();
  out.shaderF16 = adapter.features.has("shader-f16");
  const names = ["maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize",
    "maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX", "maxStorageBuffersPerShaderStage",
    "maxComputeWorkgroupsPerDimension"];
  out.limits = Object.fromEntries(names.map((n) => [n, adapter.limits[n]]));
  // NOTE: a device gets the spec's default limits, not the adapter's, unless it asks; in
  // compatibility mode that is 128 invocations per workgroup. Record both.
  // (an adapter makes one device only, so ask for a second adapter)
  const plain = await (await navigator.gpu.requestAdapter(adapterOptions)).requestDevice();
  out.defaultDeviceLimits = Object.fromEntries(names.map((n) => [n, plain.limits[n]]));
  plain.destroy();
  const t1 = performance.now();
  try {
    const device = await adapter.requestDevice({
      requiredFeatures: out.shaderF16 ? ["shader-f16"] : [],
      requiredLimits: out.limits,
    });
    out.requestDeviceMs = Math.round(performance.now() - t1);
    // a failed pipeline or dispatch does not throw: collect them
    out.gpuErrors = [];
    device.addEventListener("uncapturederror", (e) => out.gpuErrors.push(e.error.message));
    // one tiny compute pass, so "device made" also means "kernels run"
    const module = device.createShaderModule({ code: `
      @group(0) @binding(0) var<storage, read_write> x: array<f32>;
      @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) i: vec3u) {
        x[i.x] = x[i.x] * 2.0 + 1.0;
      }` });
    const pipeline = device.createComputePipeline({ layout: "auto",
      compute: { module, entryPoint: "main" } });
    const buf = device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE |
      GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(buf, 0, new Float32Array(64).fill(3));
    const read = device.createBuffer({ size: 256, usage: GPUBufferUsage.MAP_READ |
      GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: buf } }] }));
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(buf, 0, read, 0, 256);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    out.computeOk = new Float32Array(read.getMappedRange()).every((v) => v === 7);
    out.matmul512Ms = await matmulMs(device, 512);
    device.destroy();
  } catch (e) {
    out.device = `${e.name}: ${e.message}`;
  }
  return out;
}

const server = await serve({ "/": "<!doctype html><title>websd probe</title>" });
const results = {};
try {
  for (const route of routes) {
    const t0 = Date.now();
    const browser = await launch(route);
    const launchMs = Date.now() - t0;
    try {
      const page = await browser.newPage();
      const t1 = Date.now();
      await page.goto(`${server.origin}/`);
      const loadMs = Date.now() - t1;
      const t2 = Date.now();
      const r = await page.evaluate(probe, ROUTES[route].adapterOptions);
      results[route] = { chromium: browser.version(), launchMs, loadMs,
        probeMs: Date.now() - t2, ...r };
    } finally {
      await browser.close();
    }
  }
} finally {
  await server.close();
}
console.log(JSON.stringify(results, null, 1));
