// model.js: one compiled component (text encoder, UNet or VAE decoder) ready to run.
//
// The one way to run a component in JavaScript: the page loads its three through load(), the
// verify harness (web/verify/run_component.mjs) loads the one it checks the same way from the
// file system, and the GPU bench (bench/gpu/webgpu_unet_step.mjs) builds one from its parts
// (instantiate, loadParams with generated values, compilePipelines) and times invoke().
//
// Each component is its own wasm (emit links them apart so that a UNet change relinks only the
// UNet), hence its own tvmjs instance; all of them share the page's one GPUDevice. Tensors
// cross between components through the CPU as Float32Array: the boundaries are small (latents,
// text embeddings) next to what a component computes, and it keeps the instances independent.

import * as tvmjs from "@mlc-ai/web-runtime";
import { loadParams } from "./params.js";
import { DISPATCHES_PER_SUBMIT, install as installDispatch } from "./dispatch.js";

function dirOf(path) {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash + 1);
}

function arrayBufferOf(bytes) {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

export class Component {
  /**
   * Load a variant of manifest.json ({library, params} paths; "unet-fp16" in the page) onto
   * `device`: wasm, parameters, then every shader pipeline.
   *   files: {bytes(path), json(path)} that give each file checked against its manifest (the
   *   page's ModelFiles, shards.js; the verify harness's files on disk);
   *   onShard({path, bytes, index, count}) after each shard is on the GPU;
   *   onPhase({phase: "params" | "shaders", done?, total?}) as it goes (shaders: pipelines
   *   compiled so far, reported about once a second by tvmjs).
   * Sets loadSeconds = {wasm, params, pipelines}.
   */
  static async load({ name, variant, device, files, onShard, onPhase }) {
    const t0 = performance.now();
    const cache = await files.json(variant.params);
    const component = await Component.instantiate({ name, wasm: await files.bytes(variant.library),
      device });
    try {
      const t1 = performance.now();
      onPhase?.({ phase: "params" });
      const dir = dirOf(variant.params);
      await component.loadParams({ cache, read: (rel) => files.bytes(dir + rel),
        onShard: onShard && ((s) => onShard({ ...s, path: dir + s.path })) });
      const t2 = performance.now();
      onPhase?.({ phase: "shaders", done: 0, total: null });
      // tvmjs reports "Loading GPU shader modules[done/total]: ..." about once a second
      component.tvm.registerInitProgressCallback(({ text }) => {
        const m = /\[(\d+)\/(\d+)\]/.exec(text);
        if (m) onPhase?.({ phase: "shaders", done: Number(m[1]), total: Number(m[2]) });
      });
      await component.compilePipelines();
      component.loadSeconds = { wasm: (t1 - t0) / 1000, params: (t2 - t1) / 1000,
        pipelines: (performance.now() - t2) / 1000 };
    } catch (e) {
      component.dispose();
      throw e;
    }
    return component;
  }

  /**
   * A tvmjs instance of `wasm` (bytes) on `device` (a GPUDevice), without parameters, whose
   * kernels dispatch through dispatch.js, submitted every `submitEvery` dispatches
   * (this.dispatch: its switches).
   */
  static async instantiate({ name, wasm, device, submitEvery = DISPATCHES_PER_SUBMIT }) {
    const tvm = await tvmjs.instantiate(arrayBufferOf(wasm), tvmjs.createPolyfillWASI(),
      (msg) => console.debug(`websd ${name}: ${msg}`));
    const component = new Component(name, tvm);
    try {
      tvm.initWebGPU(device);
      component.dispatch = installDispatch(tvm, { every: submitEvery });
      component.gpu = tvm.webgpu();
      tvm.withNewScope(() => {
        component.vm = tvm.detachFromCurrentScope(tvm.createVirtualMachine(component.gpu));
      });
    } catch (e) {
      component.dispose();
      throw e;
    }
    return component;
  }

  constructor(name, tvm) {
    this.name = name;
    this.tvm = tvm;
    this.params = [];
    this.main = null;
  }

  /**
   * Put the parameters on the GPU (params.js loadParams): cache is the parsed
   * tensor-cache.json; read(path) -> Promise<Uint8Array> gives a shard's checked bytes, path
   * relative to tensor-cache.json's directory.
   */
  async loadParams({ cache, read, onShard }) {
    this.params = await loadParams(this.tvm, this.gpu, { cache, read, onShard });
  }

  /** Compile every WGSL pipeline now, off the main thread where the browser can, rather than
   *  stalling on the first call; now = false leaves each to its kernel's first dispatch. */
  async compilePipelines({ now = true } = {}) {
    if (now) await this.tvm.asyncLoadWebGPUPipelines(this.vm.getInternalModule());
    this.tvm.withNewScope(() => {
      this.main = this.tvm.detachFromCurrentScope(this.vm.getFunction("main"));
    });
  }

  /** A tensor on the GPU that stays there until dispose(it): inputs reused across calls. */
  upload(data, shape, dtype = "float32") {
    return this.tvm.withNewScope(() => this.tvm.detachFromCurrentScope(
      this.tvm.empty(shape, dtype, this.gpu).copyFrom(data)));
  }

  /**
   * Encode one call of `main` on `args` (GPU tensors) in the caller's tvm scope and return its
   * output tensor; the GPU runs it after this returns (await this.gpu.sync() to wait).
   */
  invoke(args) {
    return this.main(...args, ...this.params);
  }

  /**
   * Run `main` on inputs (each {data: typed array, shape, dtype} or a tensor from upload());
   * resolves to the output as a Float32Array once the GPU is done.
   */
  async run(inputs) {
    const tvm = this.tvm;
    tvm.beginScope();
    try {
      const args = inputs.map((x) => (x.data === undefined ? x
        : tvm.empty(x.shape, x.dtype || "float32", this.gpu).copyFrom(x.data)));
      const out = this.invoke(args);
      const host = tvm.empty(out.shape, out.dtype, tvm.cpu());
      host.copyFrom(out);
      await this.gpu.sync();
      const result = host.toArray();
      if (!(result instanceof Float32Array)) throw new TypeError(`${this.name}: output is ${out.dtype}, expected float32`);
      return { data: result, shape: out.shape.slice() };
    } finally {
      tvm.endScope();
    }
  }

  /**
   * Give back the GPU buffers of this component's activations. After a call tvmjs keeps them in
   * its pool for the next call; the page calls this once a component is done for the image
   * (the text encoder before the denoising loop, the UNet before the VAE decode), so that the
   * activations of the three never add up: the GPU memory of an image is the parameters plus
   * the largest component's activations. The next call allocates them again.
   */
  releaseActivations() {
    this.tvm.withNewScope(() => this.tvm.getGlobalFunc("vm.builtin.memory_manager.clear")());
  }

  dispose() {
    for (const t of this.params) t.dispose();
    this.params = [];
    this.main?.dispose();
    this.vm?.dispose();
    this.main = this.vm = null;
    // NOTE: this also destroys the shared GPUDevice (tvmjs' WebGPU context owns it); the page
    // disposes components only when it drops the whole model.
    this.tvm.dispose();
  }
}
