// model.js: one compiled component (text encoder, UNet or VAE decoder) ready to run.
//
// Each component is its own wasm (emit links them apart so that a UNet change relinks only the
// UNet), hence its own tvmjs instance; all of them share the page's one GPUDevice. Tensors
// cross between components through the CPU as Float32Array: the boundaries are small (latents,
// text embeddings) next to what a component computes, and it keeps the instances independent.

import * as tvmjs from "@mlc-ai/web-runtime";
import { loadParams } from "./params.js";
import { submitInBatches } from "./submit.js";

function dirOf(path) {
  return path.slice(0, path.lastIndexOf("/"));
}

function arrayBufferOf(bytes) {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

export class Component {
  /**
   * Load variant `name` of manifest.json ("unet" or "unet-fp16") onto `device`.
   *   files: a ModelFiles (shards.js); onShard({path, bytes, index, count}) after each shard.
   */
  static async load({ name, variant, device, files, onShard }) {
    const t0 = performance.now();
    const dir = dirOf(variant.manifest);
    const own = await files.json(variant.manifest);   // the component's files, params included
    const tensorCache = await files.json(variant.params);
    const wasm = await files.bytes(variant.library);
    const tvm = await tvmjs.instantiate(arrayBufferOf(wasm), tvmjs.createPolyfillWASI(),
      (msg) => console.debug(`websd ${name}: ${msg}`));
    const component = new Component(name, tvm);
    const t1 = performance.now();
    try {
      tvm.initWebGPU(device);
      submitInBatches(tvm);
      const gpu = tvm.webgpu();
      component.gpu = gpu;
      const paramsDir = dirOf(variant.params).slice(dir.length + 1);
      component.params = await loadParams(tvm, gpu, {
        cache: tensorCache, files: own.files, dir: paramsDir,
        read: (rel) => files.bytes(`${dir}/${rel}`),
        onShard: onShard && ((s) => onShard({ ...s, path: `${dir}/${s.path}` })),
      });
      const t2 = performance.now();
      tvm.withNewScope(() => {
        component.vm = tvm.detachFromCurrentScope(tvm.createVirtualMachine(gpu));
        component.main = tvm.detachFromCurrentScope(component.vm.getFunction("main"));
      });
      // Compile every WGSL pipeline now, off the main thread where the browser can, rather
      // than stalling on the first call.
      await tvm.asyncLoadWebGPUPipelines(component.vm.getInternalModule());
      // seconds: wasm fetch + instantiate, params, shader pipelines
      component.loadSeconds = { wasm: (t1 - t0) / 1000, params: (t2 - t1) / 1000,
        pipelines: (performance.now() - t2) / 1000 };
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
  }

  /** A tensor on the GPU that stays there until dispose(it): inputs reused across calls. */
  upload(data, shape, dtype = "float32") {
    const t = this.tvm.withNewScope(() => this.tvm.detachFromCurrentScope(
      this.tvm.empty(shape, dtype, this.gpu).copyFrom(data)));
    return t;
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
      const out = this.main(...args, ...this.params);
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
