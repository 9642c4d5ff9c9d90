// Run, check and time the hand-written WGSL kernel cases of bench/gpu/kernel_cases.py under Dawn.
//
//   node bench/gpu/wgsl_kernels.mjs CASES.json OUT.json [--dawn-features LIST] [--iters 20]
//                                   [--emulated 1] [--compile-only 1]
//
// Each case is a whole shader with its entry point `main` over storage buffers in binding order,
// a grid and a `kind` that says what it computes and how to check it:
//   gemm       a, b (float16, or float32 where params.dtype says so), p (float32):
//              P[s, z] = A[z] B[z] over the s-th slice of k; with params.conv, b is a
//              convolution's input and B its im2col
//   attention  q, k, v, out (BSHD; float16, or float32 where params.dtype says so):
//              softmax(q k^T * scale) v
// Inputs are random float16 (|x| in [0.125, 2) for a GEMM, [-1, 1) for attention); one dispatch
// is checked at 64 sampled outputs (GEMM: one element; attention: one query row) against float64
// on the same float16 values (rel = max |err| / rms of the sampled reference). Then the GPU's
// clocks are brought up (dispatches for at least 300 ms) and --iters dispatches inside one
// compute pass between two timestamps, five times: the least ms per dispatch and TFLOP/s.
// Prints the adapter's subgroup matrix configs first. --emulated 1: the cases' matrix ops are
// written out (bench/gpu/subgroup_matrix_emulation.py), so any adapter with shader-f16 and
// subgroups runs them (a CPU one in the tests); --iters 0 checks without timing;
// --compile-only 1 only validates each shader and builds its pipeline.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [casesPath, outPath, ...rest] = process.argv.slice(2);
const opts = {};
for (let i = 0; i < rest.length; i += 2) opts[rest[i].replace(/^--/, "")] = rest[i + 1];
const compileOnly = opts["compile-only"] === "1";
const iters = compileOnly ? 0 : Number(opts.iters ?? 20);
const nm = process.env.WEBSD_NODE_MODULES ?? path.resolve("web/node_modules");
const { create, globals } = await import(pathToFileURL(path.join(nm, "webgpu", "index.js")).href);
Object.assign(globalThis, globals);
const flags = ["disable-dawn-features=timestamp_quantization"];
if (opts["dawn-features"]) flags.push(`enable-dawn-features=${opts["dawn-features"]}`);
const gpu = create(flags);
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
const emulated = opts.emulated === "1";
const want = ["shader-f16", "subgroups", ...(emulated ? [] : ["chromium-experimental-subgroup-matrix"]),
              ...(iters ? ["timestamp-query"] : [])];
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
function next() { seed = (seed * 1103515245 + 12345) >>> 0; return seed; }
function pick(n) { return Math.floor((next() / 4294967296) * n); }
// random halves straight as bits: sign, exponent lo..lo+2, mantissa: |x| in [2^(lo-15), 2^(lo-12))
function randomHalf(n, lo) {
  const a = new Uint16Array(n + (n & 1));
  for (let i = 0; i < n; i++) { const r = next() >>> 5; a[i] = ((r & 1) << 15) | ((lo + (r >>> 1) % 3) << 10) | ((r >>> 3) & 0x3ff); }
  return a;
}
const inputs = new Map();
function input(key, n, lo) { if (!inputs.has(key)) inputs.set(key, randomHalf(n, lo)); return inputs.get(key); }
function buffer(data, usage) {
  const b = device.createBuffer({ size: data.byteLength, usage: usage | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(b, 0, data); return b;
}

// kind -> { inputs(c): [Uint16Array...], outBytes(c), check(c, ins, out): rel }
const KINDS = {
  gemm: {
    inputs(g) {
      const aN = g.a_batch_stride ? g.a_batch_stride * g.batch : g.m * g.k;
      const bN = g.conv?.length ? g.conv[0] * g.conv[1] * g.conv[2] * g.batch
        : g.b_batch_stride ? g.b_batch_stride * g.batch : g.k * g.n;
      const halves = [input(`a${aN}`, aN, 12), input(`b${bN}`, bN, 12)];
      return g.dtype === "float32" ? halves.map((h) => Float32Array.from(h, half)) : halves;
    },
    outBytes: (g) => g.m * g.n * g.batch * g.splits * (g.product_dtype === "float16" ? 2 : 4),
    check(g, [aH, bH], bytes) {
      const out = g.product_dtype === "float16" ? Float32Array.from(new Uint16Array(bytes), half)
        : new Float32Array(bytes);
      // the inputs as numbers (float16 bits or float32 values)
      const [aV, bV] = [aH, bH].map((h) => (h instanceof Float32Array ? h : Float32Array.from(h, half)));
      const bAt = g.conv?.length ? (bi, kk, col) => {
        const [, h, w, kh, kw, sh, sw, pt, pl, wo] = g.conv, r = kk % (kh * kw);
        const y = Math.floor(col / wo) * sh + Math.floor(r / kw) - pt, x = (col % wo) * sw + (r % kw) - pl;
        return y < 0 || y >= h || x < 0 || x >= w ? 0 : bV[bi * g.b_batch_stride + Math.floor(kk / (kh * kw)) * h * w + y * w + x];
      } : g.b_transposed ? (bi, kk, col) => bV[bi * g.b_batch_stride + col * g.k + kk]
        : (bi, kk, col) => bV[bi * g.b_batch_stride + kk * g.n + col];
      let maxErr = 0, sumSq = 0;
      for (let s = 0; s < 64; s++) {
        const bi = s % g.batch, r = pick(g.m), col = pick(g.n);
        let ref = 0;
        for (let kk = 0; kk < g.k; kk++) {
          const a = aV[bi * g.a_batch_stride + r * g.k + kk];
          ref += a * bAt(bi, kk, col);
        }
        let got = 0;
        for (let sp = 0; sp < g.splits; sp++) got += out[(sp * g.batch + bi) * g.m * g.n + r * g.n + col];
        maxErr = Math.max(maxErr, Math.abs(got - ref)); sumSq += ref * ref;
      }
      return maxErr / Math.sqrt(sumSq / 64);
    },
  },
  attention: {
    inputs(a) {
      const n = a.batch * a.keys * a.heads * a.head_dim, nq = a.batch * a.queries * a.heads * a.head_dim;
      // the padded loads of the last head read past the tensor's end: keep a little slack
      const halves = [input(`q${nq}`, nq + 64, 13), input(`k${n}`, n + 64, 13), input(`v${n}`, n + 64, 13)];
      return a.dtype === "float32" ? halves.map((h) => Float32Array.from(h, half)) : halves;
    },
    outBytes: (a) => a.batch * a.queries * a.heads * a.head_dim * (a.dtype === "float32" ? 4 : 2),
    check(a, ins, bytes) {
      const f32 = a.dtype === "float32", d = a.head_dim, row = a.heads * d;
      // inputs and output as numbers (float16 bits or float32 values)
      const [qH, kH, vH] = ins.map((h) => (f32 ? h : Float32Array.from(h, half)));
      const out = f32 ? new Float32Array(bytes) : Float32Array.from(new Uint16Array(bytes), half);
      let maxErr = 0, sumSq = 0, n = 0;
      for (let s = 0; s < 16; s++) {
        const b = pick(a.batch), i = pick(a.queries), h = pick(a.heads);
        const qo = (b * a.queries + i) * row + h * d, sc = new Float64Array(a.keys);
        let mx = -Infinity;
        for (let j = 0; j < a.keys; j++) {
          const ko = (b * a.keys + j) * row + h * d;
          let dot = 0;
          for (let c = 0; c < d; c++) dot += qH[qo + c] * kH[ko + c];
          sc[j] = dot * a.scale; mx = Math.max(mx, sc[j]);
        }
        let sum = 0;
        for (let j = 0; j < a.keys; j++) { sc[j] = Math.exp(sc[j] - mx); sum += sc[j]; }
        for (let c = 0; c < d; c++) {
          let ref = 0;
          for (let j = 0; j < a.keys; j++) ref += sc[j] * vH[(b * a.keys + j) * row + h * d + c];
          ref /= sum;
          maxErr = Math.max(maxErr, Math.abs(out[qo + c] - ref)); sumSq += ref * ref; n++;
        }
      }
      return maxErr / Math.sqrt(sumSq / n);
    },
  },
};

const qs = iters ? device.createQuerySet({ type: "timestamp", count: 2 }) : null;
const qbuf = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
const qread = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });

// One case: compile (all that --compile-only 1 does), run once and check, then time (unless
// --iters 0). Buffers it makes go on `made`, for the caller to free.
async function measure(c, row, made) {
  const kind = KINDS[c.kind ?? "gemm"], p = c.params ?? c.gemm;
  const module = device.createShaderModule({ code: c.wgsl });
  const info = await module.getCompilationInfo();
  const msgs = info.messages.filter((m) => m.type === "error" || m.type === "warning").map((m) => `${m.type}: ${m.message}`);
  if (msgs.length) row.messages = msgs.slice(0, 3);
  const pipeline = await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } });
  if (compileOnly) return;
  const ins = kind.inputs(p);
  const bufs = ins.map((h) => buffer(h, GPUBufferUsage.STORAGE));
  const outBytes = kind.outBytes(p);
  const O = device.createBuffer({ size: outBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const rb = device.createBuffer({ size: outBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  made.push(...bufs, O, rb);
  const bg = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0),
    entries: [...bufs, O].map((b, i) => ({ binding: i, resource: { buffer: b } })) });
  const run = (n, timed) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass(timed ? { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
    pass.setPipeline(pipeline); pass.setBindGroup(0, bg);
    for (let i = 0; i < n; i++) pass.dispatchWorkgroups(...c.grid);
    pass.end();
    if (timed) { enc.resolveQuerySet(qs, 0, 2, qbuf, 0); enc.copyBufferToBuffer(qbuf, 0, qread, 0, 16); }
    device.queue.submit([enc.finish()]);
  };
  const timed = async (n) => {
    run(n, true); await qread.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(qread.getMappedRange().slice(0)); qread.unmap();
    return Number(t[1] - t[0]) / 1e6;
  };
  run(1, false);
  const enc = device.createCommandEncoder(); enc.copyBufferToBuffer(O, 0, rb, 0, outBytes); device.queue.submit([enc.finish()]);
  await rb.mapAsync(GPUMapMode.READ); const bytes = rb.getMappedRange().slice(0); rb.unmap();
  row.rel = kind.check(p, ins, bytes);
  if (opts.dump) [...ins, new Uint8Array(bytes)].forEach((a, i) =>
    fs.writeFileSync(`${outPath}.${c.name.replaceAll("/", "_")}.${i}.bin`, Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
  if (!iters) return;
  for (let warm = 0; warm < 300;) warm += await timed(iters);
  const times = [];
  for (let rep = 0; rep < 5; rep++) times.push((await timed(iters)) / iters);
  row.ms = Math.min(...times); row.ms_median = times.sort((x, y) => x - y)[2];
  row.tflops = c.flop / row.ms / 1e9;
}

for (const c of JSON.parse(fs.readFileSync(casesPath, "utf8"))) {
  const row = { name: c.name, flop: c.flop }, made = [];
  errors.length = 0;
  try {
    await measure(c, row, made);
  } catch (e) { row.error = String(e?.message ?? e).slice(0, 600); }
  if (errors.length) row.errors = errors.slice(0, 3);
  for (const b of made) b.destroy();
  console.log(JSON.stringify(row));
  report.cases.push(row);
  fs.writeFileSync(outPath, JSON.stringify(report, null, 1));   // so far: a timeout keeps these
}
fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
process.exit(0);
