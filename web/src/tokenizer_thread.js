// tokenizer_thread.js: the page's side of its tokenizer worker (tokenizer_worker.js), with
// ClipTokenizer's interface made asynchronous: special, encode(text), count(text), dispose().
// The bundle stage writes the worker script beside app.js, so it is found relative to this
// module's URL.

export class TokenizerThread {
  /** Start the worker and load tokenizer.json (bytes) with tokenizer_config.json (parsed). */
  static async start(json, config) {
    const worker = new Worker(new URL("./tokenizer_worker.js", import.meta.url));
    const thread = new TokenizerThread(worker);
    const bytes = ArrayBuffer.isView(json)
      ? json.buffer.slice(json.byteOffset, json.byteOffset + json.byteLength) : json.slice(0);
    try {
      thread.special = (await thread.ask({ load: { json: bytes, config } }, [bytes])).special;
    } catch (e) {
      thread.dispose();
      throw e;
    }
    return thread;
  }

  constructor(worker) {
    this.worker = worker;
    this.special = null;
    this.pending = new Map();
    this.next = 0;
    worker.onmessage = ({ data }) => {
      const waiting = this.pending.get(data.id);
      this.pending.delete(data.id);
      if (data.error) waiting?.reject(new Error(`tokenizer: ${data.error}`));
      else waiting?.resolve(data);
    };
    worker.onerror = (ev) => {
      ev.preventDefault();
      this.failAll(new Error(`tokenizer worker failed: ${ev.message || "script error"}`));
    };
  }

  ask(request, transfer = []) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...request }, transfer);
    });
  }

  failAll(error) {
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
  }

  /** The text encoder's input ids for a prompt: Int32Array(maxLength). */
  async encode(text) {
    if (typeof text !== "string") throw new TypeError(`prompt must be a string, not ${typeof text}`);
    return (await this.ask({ encode: text })).ids;
  }

  /** The prompt's own tokens (no BOS/EOS). */
  async count(text) {
    return (await this.ask({ count: text })).count;
  }

  dispose() {
    this.worker.terminate();
    this.failAll(new Error("tokenizer worker stopped"));
  }
}
