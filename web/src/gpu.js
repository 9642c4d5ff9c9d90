// gpu.js: find a WebGPU adapter the model fits on and open the one GPUDevice the page runs on.
//
// Every failure is a GpuError whose message says what is missing and what to do, because a
// page that silently renders noise (or nothing) on an unsuitable GPU was the original demo's
// most reported problem. The model's needs come from manifest.json's "requirements" per
// flavor (a precision and the features its variants need: "float16", "float16+subgroup-matrix";
// {features, subgroupSize, maxStorageBufferBindingSize, maxBufferSize, ...}); any key there
// that is a GPUSupportedLimits name is checked, so the build can add limits without a page change.

/** A WebGPU problem the user has to act on; `kind` tells tests and the page which one. */
export class GpuError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = "GpuError";
    this.kind = kind;   // "no-webgpu" | "no-adapter" | "limits" | "device" | "lost" | "error"
  }
}

// What the kernels were scheduled for (threads and workgroup memory per workgroup: the target
// config's, configs/targets/webgpu.toml) is in every flavor's requirements, so a
// compatibility-mode adapter (ANGLE/OpenGL ES), which may offer less, is refused by the same check.
// Requested at the adapter's value: asking costs nothing and a device otherwise gets defaults
// (128 invocations per workgroup in compatibility mode, 128 MiB bindings).
const REQUESTED = ["maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX", "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ", "maxStorageBuffersPerShaderStage", "maxComputeWorkgroupsPerDimension"];
const NOT_LIMITS = new Set(["features", "subgroupSize", "download_bytes", "gpu_bytes"]);
// Most capable first: float16 halves the download and the memory when the GPU can run it; a
// flavor with features (the GPU's matrix units) is faster than the same precision without.
const PRECISION_ORDER = ["float16", "float32"];

function mib(bytes) {
  return bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(bytes % 2 ** 20 ? 1 : 0)} MiB` : `${bytes} bytes`;
}

/** Whether an adapter can run a flavor: its features, and the subgroup size its kernels need. */
export function canRun(need, adapterFeatures, adapterInfo = {}) {
  return (need.features || []).every((f) => adapterFeatures.has(f))
    && (need.subgroupSize === undefined || (adapterInfo.subgroupMinSize === need.subgroupSize
      && adapterInfo.subgroupMaxSize === need.subgroupSize));
}

/** The flavor to run: the most capable the manifest has and the adapter can do (PRECISION_ORDER,
 *  then more features first); the last resort is the manifest's plainest one. */
export function chooseFlavor(requirements, adapterFeatures, adapterInfo = {}) {
  const rank = (f) => [PRECISION_ORDER.indexOf(f.split("+")[0]), -f.split("+").length];
  const offered = Object.keys(requirements || {}).filter((f) => PRECISION_ORDER.includes(f.split("+")[0]))
    .sort((a, b) => { const [x, y] = [rank(a), rank(b)]; return x[0] - y[0] || x[1] - y[1]; });
  if (!offered.length) throw new GpuError("error", "manifest.json has no \"requirements\"; rebuild the model (doit build target=webgpu)");
  return offered.find((f) => canRun(requirements[f], adapterFeatures, adapterInfo))
    ?? offered[offered.length - 1];
}

/** Limits the model needs but the adapter lacks, as [{name, needed, available}]. */
export function missingLimits(need, adapterLimits) {
  const wanted = {};
  for (const [name, value] of Object.entries(need)) {
    if (!NOT_LIMITS.has(name) && typeof value === "number") wanted[name] = Math.max(wanted[name] ?? 0, value);
  }
  return Object.entries(wanted)
    .filter(([name, needed]) => !(adapterLimits[name] >= needed))
    .map(([name, needed]) => ({ name, needed, available: adapterLimits[name] }));
}

// Resolves to [adapter or null, whether it is a compatibility-mode adapter].
async function requestAdapter(gpu, featureLevel) {
  // NOTE: a compatibility-mode adapter (asked for; it may still be core) lacks the
  // "core-features-and-limits" feature; Chromium 156 sets no adapter.featureLevel.
  const compat = async () => {
    const a = await gpu.requestAdapter({ featureLevel: "compatibility" });
    return [a, !!a && !a.features.has("core-features-and-limits")];
  };
  if (featureLevel === "compatibility") return compat();
  // A plain request finds Vulkan/D3D12/Metal adapters; Chromium's OpenGL ES route (and some
  // older GPUs) only offers a compatibility-mode adapter, which the kernels can still use. A
  // core adapter that is a software fallback (SwiftShader) gives way to a compatibility-mode
  // one that is not: on a machine without a GPU that is lavapipe, 5-10x faster (docs/page.md).
  const core = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (core && !core.info?.isFallbackAdapter) return [core, false];
  const other = await compat();
  if (other[0] && !other[0].info?.isFallbackAdapter) return other;
  return core ? [core, false] : other;
}

/** Throws the GpuError a browser without WebGPU gets (the page asks before it starts the
 *  model's worker: a worker may see WebGPU where the page does not, and the page is what the
 *  user runs). */
export function requireWebGPU(gpu = globalThis.navigator?.gpu) {
  if (!gpu) {
    throw new GpuError("no-webgpu", "WebGPU is not available in this browser (navigator.gpu is " +
      "missing). Use a recent Chrome, Edge, Safari or Firefox with WebGPU, on an https:// or " +
      "http://localhost page; on Linux, Chromium needs --enable-unsafe-webgpu.");
  }
}

/**
 * Open the device for the model described by `manifest`.
 *   featureLevel: "compatibility" asks for a compatibility-mode adapter only (the page's
 *     ?featureLevel=compatibility); default: core, then compat when core is missing or a
 *     software fallback and compat is not.
 *   onLost(GpuError): the device was lost (driver reset, GPU process crash, out of memory);
 *     not called after close().
 *   onError(message): a WebGPU validation/out-of-memory error nothing caught.
 * Returns { device, flavor, precision, adapterInfo, limits, errors: [messages], close() }:
 *   flavor picks the manifest's variants; precision is its precision.
 */
export async function openDevice(manifest, { gpu = globalThis.navigator?.gpu, featureLevel, onLost,
  onError } = {}) {
  requireWebGPU(gpu);
  const [adapter, compatibility] = await requestAdapter(gpu, featureLevel);
  if (!adapter) {
    throw new GpuError("no-adapter", "WebGPU is present but no GPU adapter was found: the GPU or " +
      "its driver may be blocklisted or disabled (see chrome://gpu). On Linux, start Chromium " +
      "with --enable-unsafe-webgpu; check that hardware acceleration is on.");
  }
  const flavor = chooseFlavor(manifest.requirements, adapter.features, adapter.info || {});
  const precision = flavor.split("+")[0];
  const need = manifest.requirements[flavor];
  const missing = missingLimits(need, adapter.limits);
  if (missing.length) {
    const what = missing.map((m) => `${m.name}: the model needs ${m.needed} (${mib(m.needed)}), ` +
      `this GPU offers ${m.available ?? "none"}${m.available ? ` (${mib(m.available)})` : ""}`).join("; ");
    throw new GpuError("limits", `This GPU's WebGPU limits are too small for the ${flavor} ` +
      `model: ${what}. Use a GPU with larger limits, or a smaller model or image size.`);
  }
  const requiredLimits = {};
  for (const name of new Set([...REQUESTED, ...Object.keys(need).filter((k) => !NOT_LIMITS.has(k))])) {
    if (adapter.limits[name] !== undefined) requiredLimits[name] = adapter.limits[name];
  }
  let device;
  try {
    device = await adapter.requestDevice({ requiredFeatures: need.features || [], requiredLimits });
  } catch (e) {
    throw new GpuError("device", `The GPU refused a device with the model's needs ` +
      `(${(need.features || []).join(", ") || "no features"}, ${flavor}): ${e.message}`);
  }
  const errors = [];
  // NOTE: a failed shader or dispatch does not throw; without this it would give noise silently.
  device.addEventListener("uncapturederror", (e) => {
    const message = e.error?.message ?? String(e.error);
    errors.push(message);
    onError?.(message);
  });
  let closing = false;
  device.lost.then((info) => {
    if (closing) return;
    onLost?.(new GpuError("lost", `The GPU device was lost (${info.reason || "unknown"}` +
      `${info.message ? `: ${info.message}` : ""}). The GPU may have run out of memory or its ` +
      `driver reset; press Generate to start again (the parameters come from the cache).`));
  });
  const info = adapter.info || {};
  return {
    device, flavor, precision, errors,
    limits: requiredLimits,
    adapterInfo: { vendor: info.vendor || "", architecture: info.architecture || "",
      description: info.description || "", featureLevel: compatibility ? "compatibility" : "core",
      software: Boolean(info.isFallbackAdapter),
      shaderF16: adapter.features.has("shader-f16") },
    close() {
      closing = true;
      device.destroy();
    },
  };
}
