// app.js: the page: the form, the progress bars, the canvas, and the test hook.
//
// The model runs in a Web Worker (model_worker.js, through model_thread.js): this thread draws
// what it reports and never waits on the GPU. On load the page reads manifest.json and
// schedules.json and has the worker open WebGPU (gpu.js), so a GPU that cannot run the model is
// named at once, before any download. The first Generate has it load the tokenizer and the
// four components (shards through the Cache API, shards.js); later ones reuse them. A lost
// device drops the model; the next Generate opens a new device and reloads from the cache.
//
// Test hook (also handy from the console), window.websd:
//   ready: Promise<void>, settled once the startup checks ran (their errors are on the page).
//   generate(opts) -> Promise<{pixels: number[] (RGBA, row-major), width, height, seconds,
//       secondsPerStep, precision, previews (seconds of each decoded preview)}>: fills the
//       form with opts ({prompt, negativePrompt, guidance, steps, seed, scheduler, strength,
//       size ("WIDTHxHEIGHT", one of the build's)}; missing ones keep the form's values) and
//       presses Generate. Rejects with the message the page shows (refused settings, GPU
//       errors, Cancel). Image-to-image runs when an image was chosen (the file input
//       #init-image or a drop on #init-drop; #init-clear removes it).
//   cancel(): the Cancel button.
//   status() -> {phase, precision, adapter, imageSize, message, gpuError, download, files,
//       longTasks ([{start, ms, phase}], the main thread's), readyAt (when ready settled),
//       loadSeconds, initImage ({name, width, height} of the chosen image, or null)}: loadSeconds per component {wasm, params, pipelines} once loaded;
//       download = {total, loaded, shards: {cache, network}}; files = every model file read
//       since the page loaded: [{path, source: "cache" | "network", bytes, ms, replaced?}].
//   cacheName: the Cache API cache that holds the model files, keyed by their absolute URLs.
//   loseDevice(): destroys the worker's GPUDevice, as a driver reset would (tests check the
//       lost-device path).

import { GpuError, requireWebGPU } from "./gpu.js";
import { latentPreviewRGBA } from "./image.js";
import { ModelThread } from "./model_thread.js";
import { OptionError, checkOptions, defaults } from "./options.js";
import { cancelled } from "./pipeline.js";
import { readSettings, withSettings } from "./png_settings.js";
import { firstIteration, schedulerNames } from "./schedulers.js";
import { CACHE_NAME, ModelFiles, clearCache } from "./shards.js";
import { shardsOf, sizesOf } from "./variants.js";

const LABELS = { "dpm++2m": "DPM-Solver++ 2M", pndm: "PNDM", euler: "Euler", ddim: "DDIM",
  lms: "LMS", "dpm++2m-karras": "DPM-Solver++ 2M Karras", "euler-a": "Euler ancestral",
  lcm: "LCM" };
const $ = (id) => document.getElementById(id);

// The main thread's long tasks (over 50 ms, where the browser reports them), with the phase the
// page was in: what keeps the page from answering while it loads and generates.
const longTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      longTasks.push({ start: Math.round(e.startTime), ms: Math.round(e.duration), phase: state.phase });
    }
  }).observe({ type: "longtask", buffered: true });
} catch {
  // no Long Tasks API (Firefox, Safari): nothing to report
}

const state = {
  phase: "starting",   // starting | ready | loading | generating | error
  manifest: null, files: null, tables: null, loading: null,
  thread: null,        // the model's worker (model_thread.js)
  gpu: null,           // the worker's open GPU: {flavor, precision, adapterInfo}
  model: null,         // the worker's loaded model: {precision, latentShape, maxLength, loadSeconds}
  controller: null, message: "", gpuError: "", loadInfo: null,
  last: null,          // the last finished image: {rgba, width, height, made, settings}; Save saves it
  saved: [],           // the file names this visit saved
  history: [],         // this visit's finished images (the strip under the image)
  initImage: null,     // image-to-image: {name, width, height, bitmap, rgba (at the chosen size)}
  modelSize: null,     // "WIDTHxHEIGHT" the loaded (or loading) model was built for
  readyAt: null,       // performance.now() when the startup checks had run (ready settled)
  download: { total: 0, loaded: 0, networkBytes: 0, t0: 0, readMs: {}, shards: { cache: 0, network: 0 } },
};

// --- what the page shows ------------------------------------------------------------------

function showMessage(text, isError = false) {
  state.message = text;
  $("message").textContent = text;
  $("message").classList.toggle("error", isError);
}

function showGpuError(text) {
  state.gpuError = text;
  $("gpu-error").textContent = text;
  $("gpu-error").hidden = !text;
}

function setBusy(busy) {
  $("generate").disabled = busy || !state.tables;
  $("save").disabled = !state.last;
  $("cancel").disabled = !busy;
  // the settings of a run stay what it runs with until it ends
  const guidanceFree = state.manifest?.contract.guidance_free;
  for (const id of [...Object.values(FIELDS), "random-seed", "init-image", "init-clear"]) {
    if (id === "size" && $("size").options.length < 2) {
      $(id).disabled = true;   // nothing to choose
      continue;
    }
    $(id).disabled = busy || (guidanceFree && (id === "guidance" || id === "negative-prompt"));
  }
}

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

function showDownload(done = false) {
  const d = state.download;
  // the rate counts time spent reading shards only, not compiling shaders in between
  const readMs = Object.values(d.readMs).reduce((a, b) => a + b, 0);
  const rate = d.networkBytes && readMs > 0 ? `, ${(d.networkBytes / 1e3 / readMs).toFixed(1)} MB/s` : "";
  const from = `${d.shards.cache} shard(s) from cache, ${d.shards.network} from network`;
  $("download-progress").value = d.total ? d.loaded / d.total : 0;
  $("download-text").textContent = done
    ? `${mb(d.loaded)} (${from}${rate}); model ready in ${((performance.now() - d.t0) / 1000).toFixed(1)} s`
    : `${mb(d.loaded)} / ${mb(d.total)}${rate} (${from})`;
}

// --- loading: its phases, with the time each took --------------------------------------

const PHASE_WORDS = { params: "parameters", shaders: "compiling GPU shaders" };

/** Start timing a load; phase events (loader.js onPhase) move it on; finish() totals it. */
function loadTimer() {
  const t0 = performance.now();
  const load = { t0, phase: null, phaseT0: t0, component: "", done: 0, total: null,
    seconds: { params: 0, shaders: 0 }, pipelines: {} };
  const close = (now) => {
    if (load.phase) load.seconds[load.phase] += (now - load.phaseT0) / 1000;
  };
  const render = () => {
    const elapsed = ((performance.now() - t0) / 1000).toFixed(1);
    const count = load.phase === "shaders" && load.total ? ` ${load.done} / ${load.total}` : "";
    $("load-text").textContent = load.phase
      ? `Loading: ${PHASE_WORDS[load.phase]} (${load.component}${count}), ${elapsed} s`
      : `Loading: opening the GPU, ${elapsed} s`;
  };
  const timer = setInterval(render, 250);
  render();
  return {
    onPhase({ phase, component, done = 0, total = null }) {
      const now = performance.now();
      if (phase !== load.phase || component !== load.component) {
        close(now);
        Object.assign(load, { phase, component, phaseT0: now });
      }
      Object.assign(load, { done, total });
      if (total) load.pipelines[component] = total;
      render();
    },
    finish(failed = false) {
      clearInterval(timer);
      close(performance.now());
      load.phase = null;
      const s = load.seconds;
      state.loadInfo = { seconds: (performance.now() - t0) / 1000, params_s: s.params,
        shaders_s: s.shaders, pipelines: load.pipelines };
      $("load-text").textContent = failed ? "" : `Ready in ${state.loadInfo.seconds.toFixed(1)} s: ` +
        `parameters ${s.params.toFixed(1)} s, GPU shaders ${s.shaders.toFixed(1)} s (` +
        Object.entries(load.pipelines).map(([c, n]) => `${c} ${n}`).join(", ") + " pipelines)";
    },
  };
}

/** The denoising progress; `decoded`: the step whose decoded preview is on the canvas. */
function showStep({ step, total, seconds }, decoded = null) {
  $("denoise-progress").value = step / total;
  $("denoise-text").textContent = `step ${step}/${total}, ${seconds.toFixed(2)} s/step` +
    (decoded ? `; preview decoded at step ${decoded}` : "");
}

// A small image (the default model's 64x64) is shown at most this many times its size, scaled
// smoothly by the browser: larger, nearest-neighbour scaling shows its pixels as blocks.
const MAX_DISPLAY_SCALE = 4;

/** The canvas holds the image at its own size; the page shows it up to MAX_DISPLAY_SCALE x. */
function sizeImage(width, height) {
  const canvas = $("image");
  if (canvas.width !== width || canvas.height !== height) [canvas.width, canvas.height] = [width, height];
  canvas.style.maxWidth = `${width * MAX_DISPLAY_SCALE}px`;
}

/** An image on the canvas (which takes its size), or a preview (scaled to the canvas). */
function drawRGBA(rgba, width, height, { preview = false } = {}) {
  const canvas = $("image");
  if (!preview) sizeImage(width, height);
  if (canvas.width === width && canvas.height === height) {
    canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
    return;
  }
  // the latent preview is 8x smaller than the image: scale it up, smoothly
  const small = new OffscreenCanvas(width, height);
  small.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
}

// --- the form -----------------------------------------------------------------------------

const FIELDS = { prompt: "prompt", negativePrompt: "negative-prompt", guidance: "guidance",
  steps: "steps", seed: "seed", scheduler: "scheduler", strength: "strength", size: "size" };

/** A refused setting: its field is marked and focused until it is edited. */
function markInvalid(field) {
  const el = FIELDS[field] && $(FIELDS[field]);
  if (!el) return;
  el.classList.add("invalid");
  el.setAttribute("aria-invalid", "true");
  el.focus();
}

function clearInvalid() {
  for (const id of Object.values(FIELDS)) {
    $(id).classList.remove("invalid");
    $(id).removeAttribute("aria-invalid");
  }
}

function readForm() {
  return Object.fromEntries(Object.entries(FIELDS).map(([k, id]) => [k, $(id).value]));
}

/** The numeric fields' ranges, steps and defaults, and the labels that show the ranges, from
 *  the build's contract (the HTML carries none of them). */
function setupForm(contract) {
  for (const name of ["guidance", "steps", "seed", "strength"]) {
    const range = contract.options[name];
    Object.assign($(name), { min: range.min, max: range.max, step: range.step });
    const label = document.querySelector(`label[for="${name}"] .range`);
    if (label) label.textContent = `(${range.min}-${range.max})`;
  }
  // a few-step model's own steps, guidance and sampler come with its contract
  const { guidance, steps, seed, scheduler, strength } = defaults(contract);
  writeForm({ guidance, steps, seed, scheduler, strength });
  if (contract.guidance_free) {
    $("negative-prompt").placeholder = "this model runs without guidance: no negative prompt";
    document.querySelector('label[for="guidance"] .range').textContent = "(off: this model runs without it)";
  }
}

function writeForm(opts) {
  for (const [k, id] of Object.entries(FIELDS)) if (opts[k] !== undefined) $(id).value = String(opts[k]);
  $("strength-value").textContent = $("strength").value;
}

// --- the image to start from (image-to-image) ------------------------------------------

/** The chosen image size, [width, height]. */
function chosenSize() {
  return ($("size").value || $("size").options[0].value).split("x").map(Number);
}

/** Read an image file as the image to start from (scaleInitImage). */
async function setInitImage(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    showMessage(`${file.name || "That file"} is not an image this browser can read; pick a PNG ` +
      "or JPEG.", true);
    return;
  }
  state.initImage?.bitmap.close();
  state.initImage = { name: file.name, width: bitmap.width, height: bitmap.height, bitmap };
  scaleInitImage();
  $("init-preview").hidden = $("init-clear").hidden = false;
  showMessage("");
}

/** The image to start from at the chosen size: its largest centered crop of the size's shape,
 *  scaled to it (a canvas, high-quality smoothing; an image already at that size is copied as
 *  it is). Runs again when the size changes. */
function scaleInitImage() {
  const init = state.initImage;
  if (!init) return;
  const [width, height] = chosenSize();
  const cw = Math.min(init.width, Math.floor(init.height * width / height));
  const ch = Math.min(init.height, Math.floor(init.width * height / width));
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(init.bitmap, Math.floor((init.width - cw) / 2), Math.floor((init.height - ch) / 2),
    cw, ch, 0, 0, width, height);
  init.rgba = ctx.getImageData(0, 0, width, height).data;
  const preview = $("init-preview");
  preview.width = width;
  preview.height = height;
  preview.getContext("2d").putImageData(new ImageData(init.rgba, width, height), 0, 0);
  $("init-text").textContent = `${init.name}, ${init.width}x${init.height}` +
    (init.width === width && init.height === height ? "" : `, used as ${width}x${height}`);
}

function clearInitImage() {
  state.initImage?.bitmap.close();
  state.initImage = null;
  $("init-image").value = "";
  $("init-preview").hidden = $("init-clear").hidden = true;
  $("init-text").textContent = "or drop an image here; it is cropped to the image size's shape " +
    "and scaled to it";
}

// --- GPU and model ------------------------------------------------------------------------

/** Forget the model (and its device); the worker has closed them, or is told to. */
function forgetModel({ tell = true } = {}) {
  if (tell && state.gpu) state.thread.ask("drop").catch(() => {});
  state.model = state.gpu = state.loading = state.modelSize = null;
}

/** The worker's events that are not a request's: file reads and GPU trouble. */
const WORKER_EVENTS = {
  bytes: (data) => onBytes(data),
  read: (entry) => state.files?.log.push(entry),
  lost: ({ message }) => {
    showGpuError(message);
    forgetModel({ tell: false });
    if (state.phase !== "generating") state.phase = "error";
  },
  "gpu-error": ({ message }) => console.error(`websd: WebGPU error: ${message}`),
};

async function openGpu() {
  const gpu = await state.thread.ask("open", { manifest: state.manifest,
    baseUrl: new URL(".", location.href).href,
    featureLevel: new URLSearchParams(location.search).get("featureLevel") ?? undefined });
  const info = gpu.adapterInfo;
  $("precision").textContent = (gpu.precision === "float16"
    ? "float16 (this GPU has shader-f16)"
    : `float32 (${info.shaderF16 ? "float16 variants not in this build" : "this GPU has no shader-f16"})`)
    + (gpu.flavor.includes("+subgroup-matrix") ? ", on the matrix units (subgroup matrices)" : "");
  $("adapter").textContent = ([info.vendor, info.architecture, info.description].filter(Boolean)
    .join(" ") || "unnamed adapter") + (info.featureLevel === "compatibility" ? " (compatibility mode)" : "")
    + (info.software ? ", a software renderer: slow; a GPU's driver would run it many times faster" : "");
  $("download-size").textContent = mb(state.manifest.requirements[gpu.flavor].download_bytes);
  const expected = state.manifest.requirements?.[gpu.flavor]?.gpu_bytes;
  $("gpu-memory").textContent = expected ? mb(expected) : "?";
  return gpu;
}

/** The model at `size` ([width, height]), loaded once; another size drops the one loaded
 *  (its UNet and VAE are other variants) and loads again, the parameters from the cache. */
async function loadOnce(size) {
  const key = size.join("x");
  if (state.loading && state.modelSize !== key) {
    await state.loading.catch(() => {});   // a load of another size finishes first
    if (state.modelSize !== key) state.loading = state.model = null;   // the worker replaces it
  }
  state.modelSize = key;
  state.loading ??= (async () => {
    if (!state.gpu) {
      state.gpu = await openGpu();
      showGpuError("");
    }
    const shards = shardsOf(state.manifest, state.gpu.flavor);
    state.download = { total: shards.reduce((a, s) => a + s.size, 0), loaded: 0, networkBytes: 0,
      t0: performance.now(), readMs: {}, shards: { cache: 0, network: 0 },
      paths: new Set(shards.map((s) => s.path)) };
    state.phase = "loading";
    showMessage(`Loading the ${state.gpu.precision} model...`);
    showDownload();
    const timer = loadTimer();
    let model;
    try {
      model = await state.thread.ask("load", { size }, { on: {
        phase: timer.onPhase,
        shard: ({ source }) => {
          if (source) state.download.shards[source] += 1;
          showDownload();
        } } });
    } catch (e) {
      timer.finish(true);
      throw e;
    }
    timer.finish();
    showDownload(true);
    state.model = model;
    return model;
  })().catch((e) => {
    forgetModel();
    throw e;
  });
  return state.loading;
}

function onBytes({ path, bytes, source, ms }) {
  const d = state.download;
  if (!d.paths?.has(path)) return;
  d.loaded += bytes;
  if (source === "network") {
    d.networkBytes += bytes;
    d.readMs[path] = ms;
  }
  showDownload();
}

/** "prompt: 12 / 75 tokens", or how many are cut, for both prompts (once the tokenizer is in).
 *  The counts come from the tokenizer's worker; an answer overtaken by a later edit is dropped. */
let tokensAsked = 0;
async function showTokens() {
  if (!state.model) return;
  const asked = ++tokensAsked;
  const max = state.model.maxLength - 2;
  let counts;
  try {
    counts = await Promise.all([["prompt", "prompt"], ["negative-prompt", "negative prompt"]]
      .map(async ([id, label]) => [label, await state.thread.ask("count", { text: $(id).value })]));
  } catch (e) {
    return;   // the model (and its tokenizer) went away meanwhile
  }
  if (asked !== tokensAsked) return;
  $("tokens").textContent = counts.map(([label, n]) => (n > max
    ? `${label}: ${n} tokens, only the first ${max} are used`
    : `${label}: ${n} / ${max} tokens`)).join("; ");
  $("tokens").classList.toggle("warning", counts.some(([, n]) => n > max));
}

// --- Generate -----------------------------------------------------------------------------

async function run() {
  if (state.controller) throw new Error("a generation is already running");
  let opts;
  clearInvalid();
  try {
    if (!state.tables) throw new Error(state.gpuError || state.message || "the page is not ready");
    opts = checkOptions(readForm(), state.manifest.contract, schedulerNames(state.tables),
      Boolean(state.initImage), sizesOf(state.manifest).map((s) => s.join("x")));
    if (state.initImage) opts.initImage = state.initImage.rgba;
  } catch (e) {
    showMessage(e.message, true);
    if (e instanceof OptionError) markInvalid(e.field);
    throw e;
  }
  const controller = state.controller = new AbortController();
  let done = null;   // the last step finished, for what a cancel says
  setBusy(true);
  try {
    const loadedBefore = Boolean(state.model);
    // Cancel while loading ends this run at once; the load goes on for the next Generate
    const model = await Promise.race([loadOnce(opts.size), new Promise((_, reject) => {
      if (controller.signal.aborted) reject(cancelled());
      controller.signal.addEventListener("abort", () => reject(cancelled()), { once: true });
    })]);
    await showTokens();
    state.phase = "generating";
    sizeImage(...opts.size);   // the previews scale to it
    const sampler = LABELS[opts.scheduler] || opts.scheduler;
    showMessage(opts.initImage
      ? `Generating from the image (${sampler}, strength ${opts.strength}: ` +
        `${opts.steps - firstIteration(opts.steps, opts.strength)} of ${opts.steps} steps)...`
      : `Generating (${sampler}, ${opts.steps} steps)...`);
    $("denoise-progress").value = 0;
    $("denoise-text").textContent = "encoding the prompt";
    let decoded = null;   // the last decoded preview's step: it stays up over the latents'
    if (controller.signal.aborted) throw cancelled();
    const request = state.thread.ask("generate", { opts }, { on: {
      step: (s) => {
        done = s;
        showStep(s, decoded);
        const [, , h, w] = model.latentShape;
        if (!decoded) drawRGBA(latentPreviewRGBA(s.latents, h, w), w, h, { preview: true });
      },
      preview: (p) => {
        decoded = p.step;
        showStep(done, decoded);
        drawRGBA(p.rgba, p.width, p.height, { preview: true });
      },
    } });
    controller.signal.addEventListener("abort", () => state.thread.cancel(request.id), { once: true });
    const result = await request;
    drawRGBA(result.rgba, result.width, result.height);
    const { initImage, size, ...settings } = opts;
    if (!initImage) delete settings.strength;
    state.last = { rgba: result.rgba, width: result.width, height: result.height, made: new Date(),
      settings: { ...settings, model: state.manifest.model,
        size: `${result.width}x${result.height}` } };
    addToHistory(state.last);
    $("denoise-text").textContent = `done, ${result.secondsPerStep.toFixed(2)} s/step`;
    showMessage(`Done in ${result.seconds.toFixed(1)} s (${result.secondsPerStep.toFixed(2)} s per ` +
      `step, ${model.precision})` + (loadedBefore || !state.loadInfo ? "." : `, after loading ` +
      `the model in ${state.loadInfo.seconds.toFixed(1)} s.`));
    state.phase = "ready";
    return { ...result, precision: model.precision };
  } catch (e) {
    state.phase = state.gpu ? "ready" : "error";
    // the previews drew over the last image: it comes back, and Save still saves it
    if (state.last) drawRGBA(state.last.rgba, state.last.width, state.last.height);
    if (e.name === "AbortError") {
      showMessage(state.model || !state.loading ? "Cancelled."
        : "Cancelled; the model goes on loading for the next Generate.");
      $("denoise-text").textContent = done ? `cancelled after step ${done.step} of ${done.total}`
        : "cancelled before the first step";
    } else if (e instanceof GpuError) {
      showGpuError(e.message);
      showMessage(e.message, true);
      state.phase = "error";
    } else {
      showMessage(e instanceof OptionError ? e.message : `Failed: ${e.message}`, true);
      // after a WebGPU error the device's state is unknown: the worker closed the model, and
      // the next run starts afresh
      if (e.dropped) forgetModel({ tell: false });
    }
    throw e;
  } finally {
    state.controller = null;
    setBusy(false);
  }
}

/** This visit's images as a strip of thumbnails: one shows that image again, makes it the one
 *  Save saves, and puts its settings back in the form. */
function addToHistory(image) {
  state.history.push(image);
  const button = document.createElement("button");
  button.type = "button";
  const s = image.settings;
  button.title = `${s.prompt || "(empty prompt)"}: seed ${s.seed}, ${s.steps} steps, ${s.scheduler}`;
  button.setAttribute("aria-label", `show image ${state.history.length}: ${button.title}`);
  const thumb = document.createElement("canvas");
  thumb.setAttribute("aria-hidden", "true");   // the button's label says what it shows
  thumb.width = image.width;
  thumb.height = image.height;
  thumb.getContext("2d").putImageData(new ImageData(image.rgba, image.width, image.height), 0, 0);
  button.append(thumb);
  button.addEventListener("click", () => {
    if (state.controller) return;
    state.last = image;
    drawRGBA(image.rgba, image.width, image.height);
    writeForm(image.settings);
    markShown(button);
  });
  $("history").append(button);
  markShown(button);
}

function markShown(button) {
  for (const b of $("history").children) b.setAttribute("aria-pressed", String(b === button));
}

/** A file name no other save of this visit has: websd-<model>-<seed>-<date>-<time>[-n].png, the
 *  time the image was made (saving one image twice gives -2, not a name a second later). */
function saveName({ settings, made }) {
  const stamp = made.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const base = `websd-${settings.model}-${settings.seed}-${stamp}`;
  let name = `${base}.png`;
  for (let n = 2; state.saved.includes(name); n++) name = `${base}-${n}.png`;
  state.saved.push(name);
  return name;
}

/** The last finished image as a PNG that carries its settings (png_settings.js). */
async function savePng() {
  const { rgba, width, height, settings } = state.last;
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
  const png = new Uint8Array(await (await canvas.convertToBlob({ type: "image/png" })).arrayBuffer());
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([withSettings(png, settings)], { type: "image/png" }));
  a.download = saveName(state.last);
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

/** A PNG dropped on the page (not on "Start from an image"): the settings it carries go back
 *  into the form. */
async function restoreSettings(file) {
  let settings = null;
  try {
    settings = readSettings(new Uint8Array(await file.arrayBuffer()));
  } catch {
    // not a PNG: said below
  }
  if (!settings) {
    showMessage(`${file.name} carries no websd settings; to start from it, drop it on ` +
      `"Start from an image".`, true);
    return;
  }
  const known = Object.fromEntries(Object.keys(FIELDS).filter((k) => settings[k] !== undefined)
    .map((k) => [k, settings[k]]));
  writeForm(known);
  showTokens();
  const other = settings.model && settings.model !== state.manifest.model
    ? ` (it was made with ${settings.model}; this page runs ${state.manifest.model})` : "";
  showMessage(`Settings restored from ${file.name}${other}.`);
}

// --- startup ------------------------------------------------------------------------------

async function start() {
  const res = await fetch(new URL("manifest.json", location.href), { cache: "no-store" });
  if (!res.ok) throw new Error(`manifest.json: HTTP ${res.status}; is this the model's directory?`);
  const manifest = state.manifest = await res.json();
  $("model-name").textContent = manifest.model;
  const sizes = sizesOf(manifest).map((s) => s.join("x"));
  $("image-size").textContent = sizes.join(", ");
  for (const size of sizes) $("size").add(new Option(size, size));
  sizeImage(...chosenSize());
  state.files = new ModelFiles({ baseUrl: new URL(".", location.href).href, files: manifest.files,
    onBytes });
  state.thread = new ModelThread(WORKER_EVENTS);
  const tables = await state.files.json(manifest.schedules);
  // the model's own scheduler (schedules.json model_scheduler) is marked as such
  for (const name of schedulerNames(tables)) {
    const own = name === tables.model_scheduler ? " (the model's own)" : "";
    $("scheduler").add(new Option((LABELS[name] || name) + own, name));
  }
  setupForm(manifest.contract);
  try {
    requireWebGPU();
    state.gpu = await openGpu();
  } catch (e) {
    state.phase = "error";
    showGpuError(e.message);
    return;
  }
  state.tables = tables;
  state.phase = "ready";
  setBusy(false);
}

$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  run().catch(() => {});   // run() shows every error on the page
});
$("cancel").addEventListener("click", () => state.controller?.abort());
// the keyboard: Ctrl+Enter (Cmd+Enter) generates from any field, the prompts included (where
// Enter is a new line); Escape cancels a run
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && !$("generate").disabled) {
    ev.preventDefault();
    $("form").requestSubmit();
  } else if (ev.key === "Escape" && !$("cancel").disabled) {
    ev.preventDefault();
    $("cancel").click();
  }
});
for (const id of ["prompt", "negative-prompt"]) $(id).addEventListener("input", showTokens);
$("save").addEventListener("click", savePng);
$("random-seed").addEventListener("click", () => {
  $("seed").value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
});
$("strength").addEventListener("input", () => { $("strength-value").textContent = $("strength").value; });
$("init-image").addEventListener("change", () => {
  const file = $("init-image").files[0];
  if (file) setInitImage(file);
});
$("init-clear").addEventListener("click", clearInitImage);
$("size").addEventListener("change", () => {
  scaleInitImage();
  if (!state.last) sizeImage(...chosenSize());
});
for (const type of ["dragenter", "dragover"]) {
  $("init-drop").addEventListener(type, (ev) => {
    ev.preventDefault();
    if (!state.controller) $("init-drop").classList.add("over");
  });
}
$("init-drop").addEventListener("dragleave", () => $("init-drop").classList.remove("over"));
$("init-drop").addEventListener("drop", (ev) => {
  ev.preventDefault();
  ev.stopPropagation();   // not also a settings drop (below)
  $("init-drop").classList.remove("over");
  const file = ev.dataTransfer?.files[0];
  if (file && !state.controller) setInitImage(file);
});
document.addEventListener("dragover", (ev) => ev.preventDefault());
document.addEventListener("drop", (ev) => {
  ev.preventDefault();
  const file = ev.dataTransfer?.files[0];
  if (file && !state.controller) restoreSettings(file);
});
for (const id of Object.values(FIELDS)) {
  $(id).addEventListener("input", () => {
    $(id).classList.remove("invalid");
    $(id).removeAttribute("aria-invalid");
  });
}
$("clear-cache").addEventListener("click", async () => {
  await clearCache();
  showMessage("Cached model files deleted; the next load downloads them again.");
});

const ready = start().catch((e) => {
  state.phase = "error";
  showMessage(`The page could not start: ${e.message}`, true);
}).finally(() => { state.readyAt = performance.now(); });

window.websd = {
  ready,
  cacheName: CACHE_NAME,
  async generate(opts = {}) {
    await ready;
    writeForm(opts);
    const r = await run();
    return { pixels: Array.from(r.rgba), width: r.width, height: r.height, seconds: r.seconds,
      secondsPerStep: r.secondsPerStep, precision: r.precision, previews: r.timings.previews };
  },
  cancel() {
    state.controller?.abort();
  },
  loseDevice() {
    return state.thread?.ask("loseDevice");
  },
  status() {
    const { paths, readMs, ...download } = state.download;
    return { phase: state.phase, precision: state.gpu?.precision ?? null,
      flavor: state.gpu?.flavor ?? null,
      adapter: state.gpu?.adapterInfo ?? null, imageSize: state.manifest?.image_size ?? null,
      modelSize: state.modelSize,
      message: state.message, gpuError: state.gpuError, download,
      loadSeconds: state.model?.loadSeconds ?? null,
      initImage: state.initImage
        ? { name: state.initImage.name, width: state.initImage.width, height: state.initImage.height }
        : null,
      history: state.history.length, load: state.loadInfo, form: readForm(), invalid: Object.keys(FIELDS).filter((k) => $(FIELDS[k]).classList.contains("invalid")),
      focused: document.activeElement?.id ?? null, saved: state.saved.slice(),
      last: state.last ? state.last.settings : null, longTasks: longTasks.slice(), readyAt: state.readyAt,
      files: state.files ? state.files.log.slice() : [] };
  },
};
