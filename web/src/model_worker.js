// model_worker.js: the model in a Web Worker: the GPUDevice, the tokenizer, the four components
// and the denoising loop (gpu.js, loader.js and pipeline.js, as Node runs them in the tests).
//
// tvmjs encodes a whole component call's dispatches in one JavaScript task, and loading
// compiles wasm, hashes shards and creates pipelines: on the main thread those were tasks of
// up to 210 ms (a busy 2-core machine, lavapipe), in which the page answered no click and drew
// nothing. Here they block only this worker; the page (app.js through model_thread.js) draws
// what the worker reports. Bundled on its own by the bundle stage as a classic worker script
// (dist/<model>/<target>/model_worker.js): the tokenizer package's Emscripten loader needs one.
//
// Messages: {id, op, args} -> {id, value} or {id, error: {name, kind, message, dropped}};
// while a request runs, {id, event, data} for it; {event, data} for the worker as a whole.
//   open({manifest, baseUrl, featureLevel}) -> {flavor, precision, adapterInfo}: the GPU the
//       model will run on (kept; asked again after a loss). Events: "bytes", "read" (every
//       file the worker reads: shards.js onBytes / onRead), "lost" (the device was lost; the
//       model is dropped), "gpu-error" (a WebGPU error nothing caught).
//   load({size}) -> {precision, latentShape, maxLength, loadSeconds}: the model at that size,
//       loaded once (another size replaces it). Events: "phase", "shard" ({path, source}).
//   generate({opts}) -> pipeline.js generate's result. Events: "step", "preview".
//   cancel({run}): the generate request `run` stops at its next check (pipeline.js).
//   count({text}) -> the prompt's token count.   drop(): model and device closed.
//   loseDevice(): destroys the device as a driver reset would (the page's test hook).
// An error after which WebGPU reported errors drops the model (dropped: true): the device's
// state is unknown, so the next load starts afresh.
import { openDevice } from "./gpu.js";
import { loadModel } from "./loader.js";
import { generate } from "./pipeline.js";
import { ModelFiles } from "./shards.js";
import { ClipTokenizer } from "./tokenizer.js";
import { COMPONENTS } from "./variants.js";
import { Tokenizer } from "./web_tokenizers.js";

const state = { manifest: null, featureLevel: undefined, files: null, gpu: null, model: null,
  size: null, tables: null };
const runs = new Map();   // generate request id -> its AbortController

const post = (message, transfer = []) => self.postMessage(message, transfer);

function drop() {
  if (state.model) state.model.dispose();   // closes the device too (loader.js)
  else state.gpu?.close();
  state.model = state.gpu = state.size = null;
}

const ops = {
  async open({ manifest, baseUrl, featureLevel }) {
    if (!state.files) {
      Object.assign(state, { manifest, featureLevel });
      state.files = new ModelFiles({ baseUrl, files: manifest.files,
        onBytes: (data) => post({ event: "bytes", data }),
        onRead: (data) => post({ event: "read", data }) });
    }
    if (!state.gpu) {
      const gpu = await openDevice(state.manifest, { featureLevel: state.featureLevel,
        onLost: (err) => {
          if (state.gpu !== gpu) return;
          drop();
          post({ event: "lost", data: { message: err.message } });
        },
        onError: (message) => post({ event: "gpu-error", data: { message } }) });
      state.gpu = gpu;
    }
    const { flavor, precision, adapterInfo } = state.gpu;
    return { flavor, precision, adapterInfo };
  },

  async load({ size }, { id }) {
    if (!state.gpu) throw new Error("the GPU is not open (open first)");
    const key = size.join("x");
    if (state.model && state.size !== key) {
      // another size: its UNet and VAE are other variants; the device goes with the model
      drop();
      await ops.open({});
    }
    if (!state.model) {
      state.tables ??= await state.files.json(state.manifest.schedules);
      try {
        state.model = await loadModel({ manifest: state.manifest, files: state.files, size,
          tables: state.tables, gpu: state.gpu,
          loadTokenizer: (json, config) => ClipTokenizer.load(Tokenizer, json, config),
          onPhase: (data) => post({ id, event: "phase", data }),
          onShard: ({ path }) => post({ id, event: "shard",
            data: { path, source: state.files.log.findLast((e) => e.path === path)?.source } }) });
      } catch (e) {
        drop();   // a failed load closed what it had opened, the device included
        throw e;
      }
      state.size = key;
    }
    const m = state.model;
    return { precision: m.precision, latentShape: m.latentShape,
      maxLength: m.tokenizer.special.maxLength,
      loadSeconds: Object.fromEntries(COMPONENTS.map(([k]) => [k, m[k].loadSeconds])) };
  },

  async generate({ opts }, { id }) {
    if (!state.model) throw new Error("the model is not loaded (load first)");
    const controller = new AbortController();
    runs.set(id, controller);
    try {
      const result = await generate(state.model, opts, {
        signal: controller.signal,
        onStep: (data) => post({ id, event: "step", data }),
        onPreview: (data) => post({ id, event: "preview", data }, [data.rgba.buffer]),
      });
      return result;
    } finally {
      runs.delete(id);
    }
  },

  cancel({ run }) {
    runs.get(run)?.abort();
  },

  count({ text }) {
    if (!state.model) throw new Error("the model is not loaded (load first)");
    return state.model.tokenizer.count(text);
  },

  drop() {
    drop();
  },

  loseDevice() {
    state.gpu?.device.destroy();
  },
};

self.onmessage = async ({ data: { id, op, args } }) => {
  try {
    if (!ops[op]) throw new Error(`unknown request ${op}`);
    const value = await ops[op](args ?? {}, { id });
    post({ id, value }, value?.rgba ? [value.rgba.buffer] : []);
  } catch (e) {
    const dropped = Boolean(state.gpu?.errors.length) && e.name !== "AbortError";
    if (dropped) drop();
    post({ id, error: { name: e.name, kind: e.kind, message: e.message, dropped } });
  }
};
