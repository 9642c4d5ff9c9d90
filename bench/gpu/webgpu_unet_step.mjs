// Time one UNet denoising step of a webgpu build (wasm + WGSL, tvmjs runtime) under Dawn in Node.
//
//   node bench/gpu/webgpu_unet_step.mjs <dir> <out.json> [--latent 64] [--context N]
//        [--batch 2] [--warmup 3] [--iters 20] [--flop 1.61e12] [--peak 790e12]
//        [--backend vulkan] [--adapter NAME] [--wasm unet-fp16.wasm]
//        [--dawn-features vulkan_enable_f16_on_nvidia] [--max-seconds 120] [--setup-only 1]
//        [--submit-every 48]
//
// `probe` in place of <dir>: only the adapter, its limits and features, and one small compute
// shader (with `enable f16;` when shader-f16 is there) checked on readback.
// <dir> holds one `*.wasm` (or name it with --wasm) and params/tensor-cache.json (tvmjs tensor
// cache: metadata.params = the order `main` takes them, records[] = shards {dataPath, nbytes,
// records: [{name, shape, dtype, nbytes, byteOffset}]}). The component is the page's own
// (web/src/model.js Component: instantiate, loadParams, compilePipelines, invoke); only its shards
// are made here, from a seeded generator (uniform(-0.02, 0.02), as float32 or float16 bits), so no
// shard needs to travel. Inputs are float32 (the graph's boundary is float32 for the fp16 variant too):
// sample [batch, in_ch, latent, latent], timestep [] and encoder_hidden_states [batch, 77, ctx];
// in_ch and ctx are read off the params (conv_in, attn2 to_k) unless given.
//
// --check DIR: a correctness run on real numbers in place of the generator. DIR is what
// bench/gpu/tvm_unet_step.py --check-dir wrote on the same machine: params_<label>.bin (every
// param in this build's order and dtypes, raw, back to back), sample.bin, timestep.bin,
// encoder_hidden_states.bin (float32) and expected.bin (PyTorch float64 output as float32).
// The first step's output is compared with it: report.check = {rel_l2, max_rel_l2, passed}
// (--max-rel-l2, default 1e-2 for a float16 build and 1e-4 otherwise: webgpu.toml's verify
// thresholds); a failed check exits 4.
//
// Each timed step is main(...) then `await dev.sync()`, timed by the host's wall clock (GPU time
// plus tvmjs's per-dispatch JS work; `encode_median_ms` is the JS part); the median over --iters
// is reported with adapter info and limits. An uncaptured WebGPU error or a lost device fails the
// run (exit 2, JSON with ok: false); a non-finite output keeps the numbers and exits 3.
// --dawn-features vulkan_enable_f16_on_nvidia: Dawn hides shader-f16 on NVIDIA's Vulkan driver
// without this toggle, and the fp16 build then fails at shader creation.
// Debug knobs: WEBSD_DEBUG=1 (stage log on stderr); WEBSD_LIMITS / WEBSD_FEATURES (comma lists
// of the adapter limits / features to request; default all of LIMITS below / shader-f16,subgroups);
// --inputs "name:d0,d1,...:dtype;...": run another component (the VAE decoder, the text encoder)
// on these inputs in place of the UNet's three, seeded values (int32 inputs: token ids < 49408).
// --profile N: after the timed steps, N more steps with a timestamp query around every compute
// pass (each profiled dispatch gets a pass of its own): report.profile = GPU ms per kernel and step, by
// entry point, costliest first (needs the adapter's timestamp-query; Dawn's timestamp
// quantization is turned off for it).
// --submit-every N: submit the encoded work every N dispatches (web/src/dispatch.js, what the
// page does; default its DISPATCHES_PER_SUBMIT). The profiled steps give every dispatch its own
// compute pass (timestamps are per pass); the timed ones share passes as the page does.
// --sync-pipelines 1 (compile shaders lazily at the first step instead of
// tvm.asyncLoadWebGPUPipelines); --setup-only 1 (stop after param upload and shader compile: a
// check of a full-size build on a CPU adapter). Modules come from $WEBSD_NODE_MODULES, else
// web/node_modules, else .gpu/node_modules (the device payload); model.js imports tvmjs by
// name from web/node_modules, which run_on_device.sh links to the payload's.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";
import { Component } from "../../web/src/model.js";
import { DISPATCHES_PER_SUBMIT } from "../../web/src/dispatch.js";

const t0 = performance.now();
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..");
let outPath = null;

const debug = Boolean(process.env.WEBSD_DEBUG);
function dbg(what) { if (debug) console.error(`[${((performance.now() - t0) / 1e3).toFixed(2)} s] ${what}`); }
function fail(message, extra = {}) {
  console.error(`webgpu_unet_step: ${message}`);
  if (outPath) {
    fs.writeFileSync(outPath, JSON.stringify({ ok: false, error: message, ...extra }, null, 1));
  }
  process.exit(2);
}

process.on("uncaughtException", (e) => fail(`uncaught: ${e?.stack ?? e}`, { gpu_errors: gpuErrorsSoFar() }));
process.on("unhandledRejection", (e) => fail(`unhandled rejection: ${e?.stack ?? e}`, { gpu_errors: gpuErrorsSoFar() }));
let gpuErrorsSoFar = () => [];

// ---- arguments -------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const positional = [];
const opts = { latent: 64, batch: 2, seq: 77, warmup: 3, iters: 20, peak: 790e12 };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a.startsWith("--")) {
    const key = a.slice(2);
    const val = argv[++i];
    if (val === undefined) fail(`option ${a} needs a value`);
    opts[key] = ["backend", "adapter", "wasm", "label", "dawn-features", "check", "inputs"].includes(key) ? val : Number(val);
  } else {
    positional.push(a);
  }
}
const dir = positional[0];
const probe = dir === "probe";
outPath = positional[1] ?? null;
if (!dir || !outPath) {
  console.error("usage: node webgpu_unet_step.mjs <dir-with-wasm-and-params> | probe <out.json> [options]");
  process.exit(2);
}

// ---- modules ---------------------------------------------------------------------------------
const moduleDirs = [process.env.WEBSD_NODE_MODULES, path.join(repo, "web", "node_modules"),
                    path.join(repo, ".gpu", "node_modules")].filter(Boolean);
const nm = moduleDirs.find((d) => fs.existsSync(path.join(d, "@mlc-ai", "web-runtime"))
                                 && fs.existsSync(path.join(d, "webgpu", "index.js")));
if (!nm) fail(`no node_modules with @mlc-ai/web-runtime and webgpu in ${moduleDirs.join(", ")}`);
const { create, globals } = await import(pathToFileURL(path.join(nm, "webgpu", "index.js")).href);
Object.assign(globalThis, globals);

// ---- WebGPU device ---------------------------------------------------------------------------
const createFlags = [];
if (opts.backend) createFlags.push(`backend=${opts.backend}`);
if (opts.adapter) createFlags.push(`adapter=${opts.adapter}`);
// e.g. --dawn-features vulkan_enable_f16_on_nvidia: Dawn hides shader-f16 on NVIDIA's Vulkan
// driver unless this toggle is on (seen on the H200, driver 580.159, 2026-11-30)
if (opts["dawn-features"]) createFlags.push(`enable-dawn-features=${opts["dawn-features"]}`);
if (opts.profile) createFlags.push("disable-dawn-features=timestamp_quantization");
const gpu = create(createFlags);
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) fail("no WebGPU adapter (Vulkan loader/ICD missing? set VK_DRIVER_FILES)");
const info = adapter.info ?? {};
const adapterInfo = { vendor: info.vendor, architecture: info.architecture, device: info.device,
                      description: info.description, subgroupMinSize: info.subgroupMinSize,
                      subgroupMaxSize: info.subgroupMaxSize, isFallbackAdapter: info.isFallbackAdapter };
const LIMITS = ["maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize",
                "maxComputeInvocationsPerWorkgroup", "maxStorageBuffersPerShaderStage",
                "maxComputeWorkgroupSizeX", "maxComputeWorkgroupSizeY", "maxComputeWorkgroupSizeZ",
                "maxComputeWorkgroupsPerDimension"];
const requiredLimits = {};
const askLimits = process.env.WEBSD_LIMITS ? process.env.WEBSD_LIMITS.split(",") : LIMITS;
for (const k of askLimits) if (adapter.limits[k] !== undefined) requiredLimits[k] = adapter.limits[k];
const adapterFeatures = [...adapter.features].sort();
const requiredFeatures = (process.env.WEBSD_FEATURES ?? "shader-f16,subgroups,chromium-experimental-subgroup-matrix").split(",")
  .concat(opts.profile ? ["timestamp-query"] : []).filter((f) => adapter.features.has(f));
const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
// NOTE: dawn.node (npm webgpu 0.6.2) crashes (SIGSEGV, or SIGABRT with "The futex facility
// returned an unexpected error code" / std::system_error) when V8 collects the GPU, adapter or
// device wrapper while the device lives: a module-level const is not enough once the code no
// longer reads it. Seen on lavapipe 2026-11-30 whenever a large ArrayBuffer made V8 collect
// early. Pin all three on globalThis.
globalThis.__websdKeep = { gpu, adapter, device };
const gpuErrors = [];
gpuErrorsSoFar = () => gpuErrors.slice(0, 20);
device.addEventListener("uncapturederror", (e) => gpuErrors.push(String(e.error?.message ?? e)));
let lost = null;
device.lost.then((l) => { lost = `${l.reason}: ${l.message}`; });
const deviceLimits = {};
for (const k of LIMITS) deviceLimits[k] = device.limits[k];
const deviceReport = { adapter: adapterInfo, adapter_features: adapterFeatures,
                       device_features: requiredFeatures, device_limits: deviceLimits,
                       node: process.version, dawn_flags: createFlags };
console.log(JSON.stringify(deviceReport));
const checkErrors = async (where) => {
  if (gpuErrors.length || lost) {
    fail(`${where}: ${gpuErrors.length} WebGPU errors${lost ? `, device lost (${lost})` : ""}; `
         + `first: ${gpuErrors[0] ?? ""}`, { ...(report ?? deviceReport), gpu_errors: gpuErrors.slice(0, 20) });
  }
};

let report = null;

// ---- per-kernel GPU time: a timestamp query pair around every compute pass -------------------
// tvmjs encodes each dispatch as its own compute pass on an encoder it makes with
// device.createCommandEncoder, and names each pipeline's entry point after the kernel: wrap
// those two calls on this device object, nothing inside the runtime.
const profiler = opts.profile ? (() => {
  if (!device.features.has("timestamp-query")) fail("--profile: the adapter has no timestamp-query");
  const CAP = 4096; // queries: 2 per pass
  const querySet = device.createQuerySet({ type: "timestamp", count: CAP });
  const resolved = device.createBuffer({ size: CAP * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const readback = device.createBuffer({ size: CAP * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const entryOf = new WeakMap();
  for (const make of ["createComputePipeline", "createComputePipelineAsync"]) {
    const orig = device[make].bind(device);
    device[make] = (desc) => {
      const p = orig(desc);
      const name = desc?.compute?.entryPoint ?? "?";
      if (p && typeof p.then === "function") return p.then((pl) => { entryOf.set(pl, name); return pl; });
      entryOf.set(p, name);
      return p;
    };
  }
  const makeEncoder = device.createCommandEncoder.bind(device);
  let names = null; // kernel name per pass of the step being profiled; null = not profiling
  device.createCommandEncoder = (desc) => {
    const enc = makeEncoder(desc);
    const begin = enc.beginComputePass.bind(enc);
    enc.beginComputePass = (pd) => {
      if (!names || 2 * names.length >= CAP) return begin(pd);
      const i = names.length;
      names.push("?");
      const pass = begin({ ...(pd ?? {}), timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      const setPipeline = pass.setPipeline.bind(pass);
      pass.setPipeline = (pl) => { names[i] = entryOf.get(pl) ?? "?"; setPipeline(pl); };
      return pass;
    };
    return enc;
  };
  const perKernel = new Map(); // name -> {calls, ns}
  let steps = 0, passes = 0, truncated = false;
  return {
    start() { names = []; },
    async stop() { // after dev.sync(): every pass of the step has been submitted
      const n = names.length;
      const got = names;
      names = null;
      truncated ||= 2 * n >= CAP;
      const enc = makeEncoder();
      enc.resolveQuerySet(querySet, 0, 2 * n, resolved, 0);
      enc.copyBufferToBuffer(resolved, 0, readback, 0, 16 * n);
      device.queue.submit([enc.finish()]);
      await readback.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(readback.getMappedRange(0, 16 * n).slice(0));
      readback.unmap();
      for (let i = 0; i < n; i++) {
        const e = perKernel.get(got[i]) ?? { calls: 0, ns: 0 };
        e.calls += 1;
        e.ns += Number(t[2 * i + 1] - t[2 * i]);
        perKernel.set(got[i], e);
      }
      steps += 1;
      passes += n;
    },
    report() {
      const rows = [...perKernel].map(([kernel, e]) => ({ kernel, calls: e.calls / steps, ms: e.ns / steps / 1e6 }))
        .sort((a, b) => b.ms - a.ms);
      const total = rows.reduce((a, r) => a + r.ms, 0);
      for (const r of rows) r.share = r.ms / total;
      return { steps, dispatches_per_step: passes / steps, kernel_ms_total: total, kernels_distinct: rows.length,
               truncated, top: rows.slice(0, 40) };
    },
  };
})() : null;

// ---- probe: adapter, limits and one f16 compute shader, no wasm ------------------------------
if (probe) {
  const useF16 = device.features.has("shader-f16");
  const N = 1024;
  const code = `${useF16 ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= ${N}u) { return; }
  ${useF16 ? "let h = f16(id.x) * 0.5h; out[id.x] = f32(h) + 1.0;" : "out[id.x] = f32(id.x) * 0.5 + 1.0;"}
}`;
  const buf = device.createBuffer({ size: 4 * N, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: 4 * N, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const pipeline = await device.createComputePipelineAsync({
    layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint: "main" } });
  const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0),
                                        entries: [{ binding: 0, resource: { buffer: buf } }] });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(N / 64);
  pass.end();
  enc.copyBufferToBuffer(buf, 0, read, 0, 4 * N);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const got = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  let bad = 0;
  for (let i = 0; i < N; i++) if (got[i] !== i * 0.5 + 1) bad++;
  await checkErrors("probe shader");
  const result = { ok: bad === 0, probe: true, ...deviceReport, shader_f16_used: useF16,
                   shader_mismatches: bad, total_s: (performance.now() - t0) / 1e3 };
  fs.writeFileSync(outPath, JSON.stringify(result, null, 1));
  console.log(JSON.stringify({ probe_ok: result.ok, shader_f16_used: useF16, mismatches: bad }));
  process.exit(result.ok ? 0 : 2);
}

// ---- param records ---------------------------------------------------------------------------
function readTensorCache(d) {
  const cachePath = path.join(d, "params", "tensor-cache.json");
  if (!fs.existsSync(cachePath)) fail(`${d}: no params/tensor-cache.json`);
  const cache = JSON.parse(fs.readFileSync(cachePath, "utf8"));
  const byName = new Map();
  for (const shard of cache.records) {
    for (const r of shard.records) byName.set(r.name, { shape: r.shape, dtype: r.dtype });
  }
  const specs = cache.metadata.params.map((name) => {
    if (!byName.has(name)) fail(`param ${name} of metadata.params has no record`);
    return { name, ...byName.get(name) };
  });
  return { cache, specs };
}

const wasmName = opts.wasm ?? fs.readdirSync(dir).filter((f) => f.endsWith(".wasm")).sort()[0];
if (!wasmName) fail(`${dir}: no .wasm file`);
const { cache, specs } = readTensorCache(dir);
const numel = (shape) => shape.reduce((a, b) => a * b, 1);
const DTYPE_BYTES = { float32: 4, float16: 2, bfloat16: 2, int32: 4, int64: 8, uint32: 4 };
for (const s of specs) {
  if (!DTYPE_BYTES[s.dtype]) fail(`param ${s.name}: dtype ${s.dtype} is not supported`);
  s.nbytes = numel(s.shape) * DTYPE_BYTES[s.dtype];
}
const paramBytes = specs.reduce((a, s) => a + s.nbytes, 0);
const paramCount = specs.reduce((a, s) => a + numel(s.shape), 0);
const paramDtypes = [...new Set(specs.map((s) => s.dtype))];

// in_channels from conv_in's weight [out, in, kh, kw]; context from an attn2 to_k weight [inner, ctx]
const convIn = specs.find((s) => /conv_in[._]weight$/.test(s.name) && s.shape.length === 4);
const toK = specs.find((s) => /attn2[._]to_k[._]weight$/.test(s.name) && s.shape.length === 2);
const inCh = opts.in_channels ?? (convIn ? convIn.shape[1] : 4);
const ctx = opts.context ?? (toK ? toK.shape[1] : 768);
const sampleShape = [opts.batch, inCh, opts.latent, opts.latent];
const customInputs = (opts.inputs ?? "").split(";").filter(Boolean).map((spec) => {
  const [name, dims, dtype = "float32"] = spec.split(":");
  return { name, shape: dims ? dims.split(",").map(Number) : [], dtype };
});
const textShape = [opts.batch, opts.seq, ctx];
const fullSize = opts.latent === 64 && ctx === 768 && opts.batch === 2 && paramCount > 8e8;
const flop = opts.flop ?? (fullSize ? 1.61e12 : null);

// ---- seeded values ---------------------------------------------------------------------------
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function halfBits(x) { // float32 -> IEEE half, round to nearest even; normal/subnormal/zero
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = ((b >>> 23) & 0xff) - 127 + 15;
  let mant = b & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1), halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1))) h += 1;
    return sign | h;
  }
  let h = (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h += 1;
  return sign | h;
}
const rand = mulberry32(1234);
const POOL = 1 << 22; // values; tensors copy windows of it at random offsets
const poolF32 = new Float32Array(POOL);
const poolF16 = new Uint16Array(POOL);
for (let i = 0; i < POOL; i++) {
  poolF32[i] = (rand() * 2 - 1) * 0.02;
  poolF16[i] = halfBits(poolF32[i]);
}
const poolBF16 = new Uint16Array(POOL);
{ const u = new Uint32Array(poolF32.buffer); for (let i = 0; i < POOL; i++) poolBF16[i] = u[i] >>> 16; }

function fillBytes(dtype, n, scratch) { // -> Uint8Array view of scratch with n elements
  const bytes = n * DTYPE_BYTES[dtype];
  const view = new Uint8Array(scratch, 0, bytes);
  if (dtype.startsWith("int")) { view.fill(0); return view; }
  // int8 weights (stages/runtime/quantize.py): offset bytes, 0x80 is a weight of 0
  if (dtype === "uint32") { view.fill(0x80); return view; }
  const pool = dtype === "float32" ? poolF32 : dtype === "float16" ? poolF16 : poolBF16;
  const dst = dtype === "float32" ? new Float32Array(scratch, 0, n) : new Uint16Array(scratch, 0, n);
  let off = 0, start = Math.floor(rand() * POOL);
  while (off < n) {
    const len = Math.min(n - off, POOL - start);
    dst.set(pool.subarray(start, start + len), off);
    off += len;
    start = 0;
  }
  return view;
}

report = {
  ok: false, label: opts.label ?? path.basename(path.resolve(dir)), dir, wasm: wasmName,
  values: opts.check ? `--check ${opts.check}` : "seeded generator",
  param_count: paramCount, param_bytes: paramBytes, param_dtypes: paramDtypes,
  inputs: opts.inputs ? Object.fromEntries(customInputs.map((c) => [c.name, c.shape]))
    : { sample: sampleShape, timestep: [], encoder_hidden_states: textShape },
  ...deviceReport,
};

// ---- the component: the page's module (web/src/model.js) -------------------------------------
const label = report.label;
dbg("instantiate");
const submitEvery = Number(opts["submit-every"] ?? DISPATCHES_PER_SUBMIT);
if (!(Number.isInteger(submitEvery) && submitEvery >= 1)) fail(`--submit-every ${opts["submit-every"]}: needs a whole number >= 1`);
const component = await Component.instantiate({ name: label, wasm: fs.readFileSync(path.join(dir, wasmName)),
  device, submitEvery });
const tvm = component.tvm;
const dev = component.gpu;

// Shards made here: each record's bytes from --check's file (every param in `main`'s order,
// back to back), else from the generator.
let checkFd = null;
const checkOffset = new Map();
if (opts.check) {
  const p = path.join(opts.check, `params_${label}.bin`);
  if (!fs.existsSync(p)) fail(`--check: no ${p} (bench/gpu/tvm_unet_step.py --check-dir --webgpu ${dir})`);
  if (fs.statSync(p).size !== paramBytes) fail(`--check: ${p} has ${fs.statSync(p).size} bytes, the build's params ${paramBytes}`);
  checkFd = fs.openSync(p, "r");
  let at = 0;
  for (const s of specs) { checkOffset.set(s.name, at); at += s.nbytes; }
}
const maxBytes = Math.max(...specs.map((s) => s.nbytes), 4 * numel(textShape), 4 * numel(sampleShape),
                          ...customInputs.map((c) => 4 * numel(c.shape)));
const scratch = new ArrayBuffer(Math.ceil(maxBytes / 4) * 4);
const shardByPath = new Map(cache.records.map((shard) => [shard.dataPath, shard]));
async function makeShard(dataPath) {
  const shard = shardByPath.get(dataPath);
  const bytes = new Uint8Array(shard.nbytes);
  for (const r of shard.records) {
    if (checkFd !== null) fs.readSync(checkFd, bytes, r.byteOffset, r.nbytes, checkOffset.get(r.name));
    else bytes.set(fillBytes(r.dtype, r.nbytes / DTYPE_BYTES[r.dtype], scratch), r.byteOffset);
  }
  await dev.sync();   // bound staging memory: the previous shard's copies are done
  return bytes;
}
dbg("upload params");
const tParams = performance.now();
await component.loadParams({ cache, read: makeShard });
await dev.sync();
const paramUploadMs = performance.now() - tParams;

function readFloats(name, n) {
  const p = path.join(opts.check, `${name}.bin`);
  const buf = fs.readFileSync(p);
  if (buf.length !== 4 * n) fail(`--check: ${p} has ${buf.length} bytes, expected ${4 * n}`);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
}
function input(shape, lo, hi, name) {
  const n = numel(shape);
  const a = new Float32Array(n);
  if (opts.check) a.set(readFloats(name, n));
  else for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rand();
  return component.upload(a, shape);
}
const sample = input(sampleShape, -1, 1, "sample");
const timestep = component.upload(opts.check ? readFloats("timestep", 1) : new Float32Array([500]), []);
const text = input(textShape, -1, 1, "encoder_hidden_states");
const args = !opts.inputs ? [sample, timestep, text] : customInputs.map((c) => {
  if (c.dtype !== "int32") return input(c.shape, -1, 1, c.name);
  const ids = new Int32Array(numel(c.shape));   // token ids below CLIP's vocabulary size
  for (let i = 0; i < ids.length; i++) ids[i] = Math.floor(rand() * 49408);
  return component.upload(ids, c.shape, "int32");
});
await dev.sync();
await checkErrors("param upload");

dbg("pipelines");
const tPipe = performance.now();
try {
  await component.compilePipelines({ now: !opts["sync-pipelines"] });
} catch (e) {
  fail(`pipeline compile: ${e?.message ?? e}${gpuErrors.length ? `; first WebGPU error: ${gpuErrors[0]}` : ""}`,
       { ...report, gpu_errors: gpuErrors.slice(0, 20) });
}
const pipelineMs = opts["sync-pipelines"] ? null : performance.now() - tPipe;
await checkErrors("pipeline compile");
if (opts["setup-only"]) { // stop after upload + pipeline compile (a CPU adapter can't run a full step)
  report.ok = true;
  Object.assign(report, { setup_only: true, param_upload_ms: paramUploadMs, pipeline_compile_ms: pipelineMs,
                          total_s: (performance.now() - t0) / 1e3 });
  fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
  console.log(JSON.stringify({ setup_only: true, param_upload_ms: paramUploadMs, pipeline_compile_ms: pipelineMs }));
  process.exit(0);
}

async function step(keep) {
  tvm.beginScope();
  const s = performance.now();
  const out = component.invoke(args);
  const encoded = performance.now();
  await dev.sync();
  const done = performance.now();
  let host = null;
  if (keep) {
    host = tvm.detachFromCurrentScope(tvm.empty(out.shape, out.dtype, tvm.cpu()));
    host.copyFrom(out);
    await dev.sync();
  }
  tvm.endScope();
  return { ms: done - s, encodeMs: encoded - s, host };
}

dbg("first step");
const first = await step(true);
await checkErrors("first step");
const outArr = first.host.toArray();
let finite = 0, absSum = 0;
for (const v of outArr) { if (Number.isFinite(v)) { finite++; absSum += Math.abs(v); } }
report.output = { shape: first.host.shape, dtype: first.host.dtype, finite_fraction: finite / outArr.length,
                  mean_abs: absSum / Math.max(finite, 1) };
if (opts.check) {
  const expected = readFloats("expected", outArr.length);
  let diff = 0, norm = 0;
  for (let i = 0; i < outArr.length; i++) { diff += (outArr[i] - expected[i]) ** 2; norm += expected[i] ** 2; }
  const maxRel = opts["max-rel-l2"] ?? (paramDtypes.includes("float16") ? 1e-2 : 1e-4);
  const relL2 = Math.sqrt(diff / norm);
  report.check = { rel_l2: relL2, max_rel_l2: maxRel, passed: relL2 <= maxRel };
  console.error(`webgpu_unet_step: ${report.label} vs PyTorch float64: rel-L2 ${relL2.toExponential(2)} (<= ${maxRel}: ${relL2 <= maxRel})`);
}
first.host.dispose();
// --max-seconds (default 120) bounds warmup + timing, so a slow build still reports (>= 3 steps)
const maxMs = 1e3 * (opts["max-seconds"] ?? 120);
const tLoop = performance.now();
for (let i = 1; i < opts.warmup && performance.now() - tLoop < maxMs / 4; i++) await step(false);
await checkErrors("warmup");
dbg("timing");
const times = [], encodes = [];
for (let i = 0; i < opts.iters; i++) {
  if (times.length >= 3 && performance.now() - tLoop > maxMs) break;
  const r = await step(false);
  times.push(r.ms);
  encodes.push(r.encodeMs);
}
await checkErrors("timed steps");
if (profiler) {
  dbg("profile");
  component.dispatch.passPerDispatch = true;
  for (let i = 0; i < opts.profile; i++) {
    tvm.beginScope();
    profiler.start();
    component.invoke(args);
    await dev.sync();
    await profiler.stop();
    tvm.endScope();
  }
  await checkErrors("profiled steps");
  report.profile = profiler.report();
}
const sorted = (a) => [...a].sort((x, y) => x - y);
const median = (a) => { const s = sorted(a); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const med = median(times);
Object.assign(report, {
  ok: true, warmup: opts.warmup, iters: times.length, median_ms: med, min_ms: Math.min(...times),
  max_ms: Math.max(...times), times_ms: times, encode_median_ms: median(encodes),
  first_step_ms: first.ms, param_upload_ms: paramUploadMs, pipeline_compile_ms: pipelineMs,
  flop_per_step: flop, tflops: flop ? flop / (med * 1e-3) / 1e12 : null,
  fraction_of_peak: flop ? flop / (med * 1e-3) / opts.peak : null, peak_flops: opts.peak,
  runtime_stats: tvm.lib?.webGPUContext?.runtimeStatsText?.() ?? null,
  total_s: (performance.now() - t0) / 1e3,
});
report.output_ok = report.output.finite_fraction === 1;
fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
console.log(JSON.stringify({ label: report.label, wasm: wasmName, median_ms: med, min_ms: report.min_ms,
                             encode_median_ms: report.encode_median_ms, first_step_ms: first.ms,
                             pipeline_compile_ms: pipelineMs, tflops: report.tflops,
                             fraction_of_peak: report.fraction_of_peak, output: report.output }));
if (!report.output_ok) console.error(`webgpu_unet_step: output has non-finite values (finite fraction ${report.output.finite_fraction})`);
process.exit(!report.output_ok ? 3 : report.check && !report.check.passed ? 4 : 0);
