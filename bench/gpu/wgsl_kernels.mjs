// Run and check the subgroup-matrix GEMM cases of bench/gpu/gemm_cases.py under Dawn.
//
//   node bench/gpu/wgsl_gemm.mjs CASES.json OUT.json [--dawn-features LIST] [--iters 10]
//
// For each case: random float16 operands (|x| in [0.125, 2), random sign), one dispatch checked at 64 sampled
// outputs (float32 partial products summed over the k splits) against a float64 dot product of the same float16 values (rel = max |err| / rms of
// the sampled reference), then --iters dispatches inside one compute pass between two
// timestamps: ms per GEMM and TFLOP/s. Prints the adapter's subgroup matrix configs first.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [casesPath, outPath, ...rest] = process.argv.slice(2);
const opts = {};
for (let i = 0; i < rest.length; i += 2) opts[rest[i].replace(/^--/, "")] = rest[i + 1];
const iters = Number(opts.iters ?? 10);
const nm = process.env.WEBSD_NODE_MODULES ?? path.resolve("web/node_modules");
const { create, globals } = await import(pathToFileURL(path.join(nm, "webgpu", "index.js")).href);
Object.assign(globalThis, globals);
const flags = ["disable-dawn-features=timestamp_quantization"];
if (opts["dawn-features"]) flags.push(`enable-dawn-features=${opts["dawn-features"]}`);
const gpu = create(flags);
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
const want = ["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix", "timestamp-query"];
const missing = want.filter((f) => !adapter.features.has(f));
const report = { adapter: adapter.info?.description, configs: adapter.info?.subgroupMatrixConfigs ?? null,
                 subgroup: [adapter.info?.subgroupMinSize, adapter.info?.subgroupMaxSize], missing, cases: [] };
console.log(JSON.stringify({ adapter: report.adapter, configs: report.configs, missing }));
if (missing.length) { fs.writeFileSync(outPath, JSON.stringify(report, null, 1)); process.exit(2); }
const device = await adapter.requestDevice({
  requiredFeatures: want,
  requiredLimits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
                    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
                    maxBufferSize: adapter.limits.maxBufferSize,
                    maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup },
});
globalThis.__keep = { gpu, adapter, device };
const errors = [];
device.addEventListener("uncapturederror", (e) => errors.push(String(e.error?.message ?? e)));

function half(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >>> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24; if (e === 31) return s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
let seed = 1;
function rnd() { seed = (seed * 1103515245 + 12345) >>> 0; return (seed / 4294967296) * 2 - 1; }
// random halves straight as bits: sign, exponent 12..14, mantissa: |x| in [0.125, 2)
function randomHalf(n) {
  const a = new Uint16Array(n + (n & 1));
  for (let i = 0; i < n; i++) { seed = (seed * 1103515245 + 12345) >>> 0; const r = seed >>> 5; a[i] = ((r & 1) << 15) | ((12 + (r >>> 1) % 3) << 10) | ((r >>> 3) & 0x3ff); }
  return a;
}
function buffer(data, usage) {
  const b = device.createBuffer({ size: data.byteLength, usage: usage | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(b, 0, data); return b;
}

const qs = device.createQuerySet({ type: "timestamp", count: 2 });
const qbuf = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
const qread = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
const dataCache = new Map();
function operand(key, n) { if (!dataCache.has(key)) dataCache.set(key, randomHalf(n)); return dataCache.get(key); }

for (const c of JSON.parse(fs.readFileSync(casesPath, "utf8"))) {
  const g = c.gemm; const row = { name: c.name, flop: c.flop };
  try {
    errors.length = 0;
    const aN = g.a_batch_stride ? g.a_batch_stride * g.batch : g.m * g.k;
    const bN = g.b_batch_stride ? g.b_batch_stride * g.batch : g.k * g.n;
    const aH = operand(`a${aN}`, aN), bH = operand(`b${bN}`, bN);
    const A = buffer(aH, GPUBufferUsage.STORAGE), B = buffer(bH, GPUBufferUsage.STORAGE);
    const cBytes = g.m * g.n * g.batch * g.splits * 4;
    const C = device.createBuffer({ size: cBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const module = device.createShaderModule({ code: c.wgsl });
    const info = await module.getCompilationInfo();
    const msgs = info.messages.filter((m) => m.type === "error" || m.type === "warning").map((m) => `${m.type}: ${m.message}`);
    if (msgs.length) row.messages = msgs.slice(0, 3);
    const pipeline = await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } });
    const bg = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [
      { binding: 0, resource: { buffer: A } }, { binding: 1, resource: { buffer: B } }, { binding: 2, resource: { buffer: C } }] });
    const run = (n, timed) => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass(timed ? { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
      pass.setPipeline(pipeline); pass.setBindGroup(0, bg);
      for (let i = 0; i < n; i++) pass.dispatchWorkgroups(...c.grid);
      pass.end();
      if (timed) { enc.resolveQuerySet(qs, 0, 2, qbuf, 0); enc.copyBufferToBuffer(qbuf, 0, qread, 0, 16); }
      device.queue.submit([enc.finish()]);
    };
    run(1, false);
    const rb = device.createBuffer({ size: cBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder(); enc.copyBufferToBuffer(C, 0, rb, 0, cBytes); device.queue.submit([enc.finish()]);
    await rb.mapAsync(GPUMapMode.READ); const out = new Float32Array(rb.getMappedRange().slice(0)); rb.unmap();
    let maxErr = 0, sumSq = 0;
    for (let s = 0; s < 64; s++) {
      const bi = s % g.batch, r = Math.floor(Math.abs(rnd()) * g.m) % g.m, col = Math.floor(Math.abs(rnd()) * g.n) % g.n;
      let ref = 0;
      for (let kk = 0; kk < g.k; kk++) {
        const a = half(aH[bi * g.a_batch_stride + r * g.k + kk]);
        const b = g.b_transposed ? half(bH[bi * g.b_batch_stride + col * g.k + kk]) : half(bH[bi * g.b_batch_stride + kk * g.n + col]);
        ref += a * b;
      }
      let got = 0;
      for (let sp = 0; sp < g.splits; sp++) got += out[(sp * g.batch + bi) * g.m * g.n + r * g.n + col];
      maxErr = Math.max(maxErr, Math.abs(got - ref)); sumSq += ref * ref;
    }
    row.rel = maxErr / Math.sqrt(sumSq / 64);
    run(2, false); await device.queue.onSubmittedWorkDone();
    const times = [];
    for (let rep = 0; rep < 3; rep++) {
      run(iters, true); await qread.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(qread.getMappedRange().slice(0)); qread.unmap();
      times.push(Number(t[1] - t[0]) / 1e6 / iters);
    }
    row.ms = Math.min(...times); row.tflops = c.flop / row.ms / 1e9;
    if (errors.length) row.errors = errors.slice(0, 3);
    A.destroy(); B.destroy(); C.destroy(); rb.destroy();
  } catch (e) { row.error = String(e?.message ?? e).slice(0, 400); }
  console.log(JSON.stringify(row));
  report.cases.push(row);
  fs.writeFileSync(outPath, JSON.stringify(report, null, 1));   // so far: a timeout keeps these
}
fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
process.exit(0);
