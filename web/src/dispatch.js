// dispatch.js: how a compiled component's kernels reach the GPU, at a fraction of the JS cost.
//
// tvmjs turns each kernel of a library into a JS function that encodes one dispatch. Its own
// function opens a compute pass, writes the kernel's scalar arguments into a uniform buffer
// with queue.writeBuffer, creates a bind group and closes the pass, for every dispatch; and it
// submits a call's work only when the result is read, so the GPU waits while a whole UNet step
// (~700 dispatches) is encoded. Timed call by call in Dawn (dawn.node, on this project's 2-core
// machine), creating the bind group (45 us) and opening the pass (37 us) were most of what a
// dispatch cost (~100 us of Dawn calls; ~65 us a dispatch on the H200's host). install()
// replaces that function with one that, for the same kernels and the same ABI (launch tags
// "blockIdx.*" / "threadIdx.*" / "paramWriteAccess:[...]", buffers then scalars, the grid's x
// size as the last uniform word), does the same work so:
//   - dispatches share one compute pass until something else must be recorded (a copy, a
//     submit); WebGPU orders a pass's dispatches as it orders passes;
//   - the scalars of a batch go into one uniform buffer at 256-byte offsets (a dynamic offset
//     per dispatch), written once when the batch is submitted, before its commands;
//   - bind groups are kept, keyed by the kernel's layout and its buffers: a denoising loop
//     binds the same buffers every step. Freeing any buffer drops them all;
//   - the work is submitted every DISPATCHES_PER_SUBMIT dispatches, so that the GPU runs the
//     first dispatches of a call while JavaScript encodes the rest.
// Setting `passPerDispatch` on what install() returns gives each dispatch its own pass again
// (the GPU bench's per-kernel timestamps are per pass).

export const DISPATCHES_PER_SUBMIT = 48;

/**
 * Make `tvm` (a tvmjs instance after initWebGPU, before its pipelines load) dispatch its kernels
 * as above. every: dispatches per submit. Returns the switches: {passPerDispatch}.
 */
export function install(tvm, { every = DISPATCHES_PER_SUBMIT } = {}) {
  const ctx = tvm.lib.webGPUContext;
  if (!ctx || typeof ctx.flushCommands !== "function" || typeof ctx.createShader !== "function") {
    throw new Error("dispatch.install: this tvmjs has no webGPUContext to install into; call it after initWebGPU");
  }
  if (!(Number.isInteger(every) && every >= 1)) {
    throw new Error(`dispatch.install: every = ${every}; fix: submit every 1 or more dispatches`);
  }
  const device = ctx.device;
  const stride = Math.max(256, device.limits.minUniformBufferOffsetAlignment ?? 256);
  const uniforms = device.createBuffer({ size: every * stride,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const staged = new ArrayBuffer(every * stride);
  const i32 = new Int32Array(staged);
  const u32 = new Uint32Array(staged);
  const f32 = new Float32Array(staged);
  let batch = 0;          // dispatches encoded since the last submit
  let pass = null;        // the open compute pass on ctx.pendingEncoder
  const ids = new WeakMap();
  let nextId = 1;
  const idOf = (o) => {
    let id = ids.get(o);
    if (id === undefined) ids.set(o, (id = nextId++));
    return id;
  };
  const bindGroups = new Map();
  const switches = { passPerDispatch: false };

  const endPass = () => {
    if (pass) {
      pass.end();
      pass = null;
    }
  };
  const flush = ctx.flushCommands.bind(ctx);
  ctx.flushCommands = () => {
    endPass();
    if (batch) {
      device.queue.writeBuffer(uniforms, 0, staged, 0, batch * stride);
      batch = 0;
    }
    flush();
  };
  const copyWithin = ctx.deviceCopyWithinGPU.bind(ctx);
  ctx.deviceCopyWithinGPU = (...args) => {
    endPass();
    copyWithin(...args);
  };
  const free = ctx.deviceFreeDataSpace.bind(ctx);
  ctx.deviceFreeDataSpace = (ptr) => {
    bindGroups.clear();
    free(ptr);
  };

  const kernel = (finfo, code, async) => {
    const grid = [];              // per launch argument: 0-2 blockIdx.xyz, 3-5 threadIdx.xyz
    let writes = [];
    for (const tag of finfo.launch_param_tags) {
      if (tag.startsWith("blockIdx.")) grid.push("xyz".indexOf(tag.at(-1)));
      else if (tag.startsWith("threadIdx.")) grid.push(3 + "xyz".indexOf(tag.at(-1)));
      else if (tag.startsWith("paramWriteAccess:")) writes = JSON.parse(tag.slice("paramWriteAccess:".length));
      else throw new Error(`dispatch: kernel ${finfo.name}: launch tag ${tag} is not supported`);
    }
    const buffers = [];           // argument index of each buffer, in binding order
    const scalars = [];           // [argument index, view] of each scalar
    finfo.arg_types.forEach((dtype, i) => {
      if (dtype === "handle") buffers.push(i);
      else if (dtype.startsWith("int")) scalars.push([i, i32]);
      else if (dtype.startsWith("uint")) scalars.push([i, u32]);
      else if (dtype.startsWith("float")) scalars.push([i, f32]);
      else throw new Error(`dispatch: kernel ${finfo.name}: argument type ${dtype} is not supported`);
    });
    const layout = device.createBindGroupLayout({ entries: [
      ...buffers.map((_, b) => ({ binding: b, visibility: GPUShaderStage.COMPUTE,
        buffer: { type: writes[b] ? "storage" : "read-only-storage" } })),
      { binding: buffers.length, visibility: GPUShaderStage.COMPUTE,
        buffer: { type: "uniform", hasDynamicOffset: true } },
    ] });
    const layoutId = idOf(layout);
    const uniformBytes = 4 * (scalars.length + 1);
    const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [layout] });
    const desc = { layout: pipelineLayout, compute: { entryPoint: finfo.name,
      module: device.createShaderModule({ code, compilationHints: [{ entryPoint: finfo.name, layout: pipelineLayout }] }) } };
    const nargs = buffers.length + scalars.length;

    const dispatchWith = (pipeline) => (...args) => {
      const dim = [1, 1, 1, 1, 1, 1];
      for (let i = 0; i < grid.length; i++) dim[grid[i]] = args[nargs + i];
      // the kernels read blockIdx.x from (x, z) when x is over WebGPU's 65535: the codegen's
      // convention, with the true x size passed as the last uniform word
      const sizeX = dim[0];
      if (dim[2] !== 1) throw new Error(`dispatch: kernel ${finfo.name}: blockIdx.z is reserved`);
      while (dim[0] >= 65536) {
        dim[0] = Math.ceil(dim[0] / 2);
        dim[2] *= 2;
      }
      const at = batch * stride;
      for (let s = 0; s < scalars.length; s++) scalars[s][1][at / 4 + s] = args[scalars[s][0]];
      u32[at / 4 + scalars.length] = sizeX;
      const gpuBuffers = buffers.map((i) => ctx.gpuBufferFromPtr(args[i]));
      const key = `${layoutId}:${gpuBuffers.map(idOf).join(",")}`;
      let group = bindGroups.get(key);
      if (!group) {
        group = device.createBindGroup({ layout, entries: [
          ...gpuBuffers.map((buffer, b) => ({ binding: b, resource: { buffer } })),
          { binding: buffers.length, resource: { buffer: uniforms, size: uniformBytes } },
        ] });
        bindGroups.set(key, group);
      }
      if (!pass) {
        ctx.pendingEncoder ??= device.createCommandEncoder();
        pass = ctx.pendingEncoder.beginComputePass();
      }
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group, [at]);
      pass.dispatchWorkgroups(dim[0], dim[1], dim[2]);
      if (switches.passPerDispatch) endPass();
      if (++batch >= every) ctx.flushCommands();
    };
    return async ? device.createComputePipelineAsync(desc).then(dispatchWith)
      : dispatchWith(device.createComputePipeline(desc));
  };
  ctx.createShader = (finfo, code) => kernel(finfo, code, false);
  ctx.createShaderAsync = (finfo, code) => kernel(finfo, code, true);
  return switches;
}
