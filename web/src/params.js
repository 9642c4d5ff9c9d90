// Parameter loading for the page and the Node harnesses: one loader.
//
// A component's params are a tvmjs tensor cache (params/tensor-cache.json + params_shard_N.bin,
// written by the emit stage) and manifest.json lists the sha256 and size of every shard. Each
// shard is read through `read(path)`, which gives bytes already checked against the manifest
// (shards.js ModelFiles in the page: Cache API or network; the verify harness: the file system
// through checkShard), once, before any byte reaches the GPU; the loader copies them into the
// tensors `main` takes, in the order tensor-cache.json's metadata.params lists.

/** Hex sha256 of bytes, with Web Crypto (in browsers on http://127.0.0.1 and in Node 20). */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Thrown for a shard whose bytes do not match manifest.json. */
export class CorruptShardError extends Error {
  constructor(path, why) {
    super(`shard ${path}: ${why}; fix: fetch it again (the page does) or rebuild (doit build)`);
    this.name = "CorruptShardError";
    this.path = path;
  }
}

/** Check one shard's bytes against its manifest entry {sha256, size}; return the bytes. */
export async function checkShard(path, bytes, expect) {
  if (!expect) throw new CorruptShardError(path, "not listed in manifest.json");
  if (bytes.byteLength !== expect.size) {
    throw new CorruptShardError(path, `${bytes.byteLength} bytes, manifest.json says ${expect.size}`);
  }
  const actual = await sha256Hex(bytes);
  if (actual !== expect.sha256) {
    throw new CorruptShardError(path, `sha256 ${actual.slice(0, 12)}..., manifest.json says ` +
                                      `${expect.sha256.slice(0, 12)}...`);
  }
  return bytes;
}

const ELEMENT_BYTES = { float32: 4, float16: 2, int32: 4, int64: 8 };

/**
 * A tensor on `device` holding `bytes`. WebGPU copies need a multiple of 4 bytes, which a
 * float16 tensor with an odd element count (a 3-channel bias) is not: such a tensor is written
 * into a padded allocation and returned as a view of it with the record's shape.
 */
function deviceTensor(tvm, device, rec, bytes) {
  return tvm.withNewScope(() => {
    let t;
    if (rec.nbytes % 4 === 0) {
      t = tvm.empty(rec.shape, rec.dtype, device);
      t.copyFromRawBytes(bytes);
    } else {
      const padded = new Uint8Array(Math.ceil(rec.nbytes / 4) * 4);
      padded.set(bytes);
      const base = tvm.empty([padded.length / ELEMENT_BYTES[rec.dtype]], rec.dtype, device);
      base.copyFromRawBytes(padded);
      t = base.view(rec.shape);
    }
    return tvm.detachFromCurrentScope(t);
  });
}

/**
 * Load a component's params onto `device` (a tvmjs device) as tvm tensors in `main`'s order.
 *   tvm: the tvmjs Instance; cache: the parsed tensor-cache.json;
 *   read(path) -> Promise<Uint8Array>: the shard's checked bytes (path: the shard's dataPath,
 *   relative to tensor-cache.json's directory);
 *   onShard({path, bytes, index, count}): called after each shard is on the GPU.
 * Tensors are created outside any tvm scope: the caller owns (and disposes) them.
 */
export async function loadParams(tvm, device, { cache, read, onShard }) {
  const byName = new Map();
  const shards = cache.records;
  for (let i = 0; i < shards.length; ++i) {
    const path = shards[i].dataPath;
    const bytes = await read(path);
    if (bytes.byteLength !== shards[i].nbytes) {
      throw new CorruptShardError(path, `${bytes.byteLength} bytes, tensor-cache.json says ${shards[i].nbytes}`);
    }
    for (const rec of shards[i].records) {
      if (rec.format !== "raw") throw new Error(`param ${rec.name}: format ${rec.format} is not supported`);
      byName.set(rec.name, deviceTensor(tvm, device, rec,
                                        bytes.subarray(rec.byteOffset, rec.byteOffset + rec.nbytes)));
    }
    if (onShard) onShard({ path, bytes: bytes.byteLength, index: i, count: shards.length });
  }
  return cache.metadata.params.map((name) => {
    const t = byName.get(name);
    if (!t) throw new Error(`param ${name}: not in tensor-cache.json`);
    return t;
  });
}
