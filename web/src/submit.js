// submit.js: hand the GPU its work while a long call is still being encoded.
//
// tvmjs records every dispatch of a call into one command encoder and submits it only when the
// call's result is read (or at sync), so the GPU waits while JavaScript encodes the whole call:
// on the H200 a float16 UNet step is ~800 dispatches, ~40 ms of encoding then ~90 ms of GPU
// work, back to back. Submitting every DISPATCHES_PER_SUBMIT dispatches lets the two overlap.
// This is what tvmjs does itself when its uniform-buffer pool runs out, so the order of the
// work and of the uniform writes is the queue's, as always.

export const DISPATCHES_PER_SUBMIT = 48;

/** Make every kernel of `tvm` (a tvmjs instance after initWebGPU, before its pipelines load)
 *  submit the pending work after each `every` dispatches. */
export function submitInBatches(tvm, every = DISPATCHES_PER_SUBMIT) {
  const ctx = tvm.lib.webGPUContext;
  if (!ctx || typeof ctx.flushCommands !== "function") {
    throw new Error("submitInBatches: this tvmjs has no webGPUContext.flushCommands; call it after initWebGPU");
  }
  let pending = 0;
  const wrap = (submit) => (...args) => {
    submit(...args);
    if (++pending >= every) {
      pending = 0;
      ctx.flushCommands();
    }
  };
  const createShader = ctx.createShader.bind(ctx);
  const createShaderAsync = ctx.createShaderAsync.bind(ctx);
  ctx.createShader = (finfo, code) => wrap(createShader(finfo, code));
  ctx.createShaderAsync = async (finfo, code) => wrap(await createShaderAsync(finfo, code));
}
