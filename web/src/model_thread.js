// model_thread.js: the page's side of the model's worker (model_worker.js, which lists the
// requests): each request a promise, its events to the listeners it was asked with, the
// worker's own events ("bytes", "read", "lost", "gpu-error") to those given at start.
// Errors come back as the page knows them: AbortError for a cancelled run, GpuError with its
// kind, otherwise an Error with the worker's message (and `dropped` when the worker closed the
// model after a WebGPU error).
// The bundle stage writes the worker script beside app.js, so it is found relative to this
// module's URL.

import { GpuError } from "./gpu.js";

function fromWorker({ name, kind, message, dropped }) {
  if (name === "AbortError") return new DOMException(message, "AbortError");
  const error = name === "GpuError" ? new GpuError(kind, message) : new Error(message);
  error.dropped = dropped;
  return error;
}

export class ModelThread {
  /** Start the worker; on: {event name: listener(data)} for the worker's own events. */
  constructor(on = {}) {
    this.on = on;
    this.pending = new Map();
    this.next = 0;
    this.worker = new Worker(new URL("./model_worker.js", import.meta.url));
    this.worker.onmessage = ({ data }) => {
      const request = this.pending.get(data.id);
      if (data.event) {
        (request ? request.on : this.on)[data.event]?.(data.data);
        return;
      }
      this.pending.delete(data.id);
      if (data.error) request?.reject(fromWorker(data.error));
      else request?.resolve(data.value);
    };
    this.worker.onerror = (ev) => {
      ev.preventDefault();
      this.failAll(new Error(`the model's worker failed: ${ev.message || "script error"}`));
    };
  }

  /** Ask the worker `op` with `args`; on: listeners for this request's events. The promise
   *  carries the request's id (cancel names it). */
  ask(op, args = {}, { on = {}, transfer = [] } = {}) {
    const id = this.next++;
    const promise = new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, on });
      this.worker.postMessage({ id, op, args }, transfer);
    });
    promise.id = id;
    return promise;
  }

  /** Stop the generate request `run` at its next check; it rejects with an AbortError. */
  cancel(run) {
    this.ask("cancel", { run });
  }

  failAll(error) {
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
  }

  terminate() {
    this.worker.terminate();
    this.failAll(new Error("the model's worker stopped"));
  }
}
