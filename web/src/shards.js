// shards.js: the model's files (parameter shards, wasm, JSON) from the Cache API or the network,
// each checked against manifest.json before anyone uses it.
//
// Parameters are the bulk of the download (about 2 GB for SD v1.5 in fp32), so a second visit
// must not fetch them again: every file is kept in the Cache API under its URL. A cached copy
// is used only if its size and sha256 match manifest.json; one that does not (a partial write,
// a rebuilt model, a tampered entry) is deleted and fetched again, so a bad cache heals itself
// instead of breaking the page. A network copy that does not match is an error naming the file.
// Every read is logged ({path, source: "cache" | "network", bytes, ms, replaced}) for the page
// and its tests.

import { sha256Hex } from "./params.js";

export const CACHE_NAME = "websd-model";

/** A file whose bytes the network gave do not match manifest.json, or that fails to download. */
export class FileError extends Error {
  constructor(path, why) {
    super(`${path}: ${why}`);
    this.name = "FileError";
    this.path = path;
  }
}

async function matches(bytes, expect) {
  return bytes.byteLength === expect.size && (await sha256Hex(bytes)) === expect.sha256;
}

// The body in chunks, so a 32 MB shard moves the progress bar while it downloads.
async function readBody(response, size, onBytes) {
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const out = new Uint8Array(size);
  let at = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (at + value.byteLength > size) {
      await reader.cancel();
      throw new RangeError(`more than the ${size} bytes manifest.json lists`);
    }
    out.set(value, at);
    at += value.byteLength;
    onBytes?.(value.byteLength);
  }
  return at === size ? out : out.subarray(0, at);
}

export class ModelFiles {
  /**
   * baseUrl: the model directory's URL (where manifest.json is); files: manifest.json "files";
   * onBytes({path, bytes, source, ms}): bytes just read of a file, ms since its read began;
   * onRead(entry): a file was read, entry as this.log's (the model's worker sends them on).
   */
  constructor({ baseUrl, files, cacheName = CACHE_NAME, onBytes, onRead }) {
    this.baseUrl = baseUrl;
    this.files = files;
    this.cacheName = cacheName;
    this.onBytes = onBytes;
    this.onRead = onRead;
    this.log = [];
    this.cachePromise = null;
  }

  url(path) {
    return new URL(path, this.baseUrl).href;
  }

  // The Cache API is missing on plain-http origins other than localhost and may be refused
  // (private browsing, storage off): then every file comes from the network, with a note.
  cache() {
    this.cachePromise ??= (async () => {
      if (typeof caches === "undefined") return null;
      try {
        return await caches.open(this.cacheName);
      } catch (e) {
        console.warn(`websd: Cache API unavailable (${e.message}); files come from the network`);
        return null;
      }
    })();
    return this.cachePromise;
  }

  /** The bytes of a manifest file (path relative to the model directory), checked. */
  async bytes(path) {
    const expect = this.files[path];
    if (!expect) throw new FileError(path, "not listed in manifest.json; rebuild the model");
    const url = this.url(path);
    const t0 = performance.now();
    const cache = await this.cache();
    let replaced = null;
    if (cache) {
      const hit = await cache.match(url);
      if (hit) {
        const bytes = new Uint8Array(await hit.arrayBuffer());
        if (await matches(bytes, expect)) {
          this.onBytes?.({ path, bytes: bytes.byteLength, source: "cache", ms: performance.now() - t0 });
          this.record({ path, source: "cache", bytes: bytes.byteLength, ms: performance.now() - t0 });
          return bytes;
        }
        replaced = `cached copy did not match manifest.json (${bytes.byteLength} bytes)`;
        await cache.delete(url);
      }
    }
    let response;
    try {
      response = await fetch(url, { cache: "no-store" });
    } catch (e) {
      throw new FileError(path, `download failed (${e.message}); check the connection and retry`);
    }
    if (!response.ok) throw new FileError(path, `download failed: HTTP ${response.status}`);
    let bytes;
    try {
      bytes = await readBody(response, expect.size, (n) => this.onBytes?.({ path, bytes: n,
        source: "network", ms: performance.now() - t0 }));
    } catch (e) {
      throw new FileError(path, `download failed (${e.message})`);
    }
    if (!(await matches(bytes, expect))) {
      throw new FileError(path, `the server sent ${bytes.byteLength} bytes that do not match ` +
        `manifest.json (sha256 ${expect.sha256.slice(0, 12)}..., ${expect.size} bytes); the ` +
        `deployment is inconsistent: rebuild and redeploy the model`);
    }
    if (cache) {
      try {
        await cache.put(url, new Response(bytes, { headers: {
          "content-type": response.headers.get("content-type") || "application/octet-stream" } }));
      } catch (e) {
        // NOTE: a full quota costs the next visit a download, never this one its image
        console.warn(`websd: could not cache ${path} (${e.name}: ${e.message})`);
      }
    }
    this.record({ path, source: "network", bytes: bytes.byteLength, ms: performance.now() - t0,
      ...(replaced ? { replaced } : {}) });
    return bytes;
  }

  record(entry) {
    this.log.push(entry);
    this.onRead?.(entry);
  }

  async json(path) {
    return JSON.parse(new TextDecoder().decode(await this.bytes(path)));
  }
}

/** Drop every cached model file (the page's "Clear cache"). */
export async function clearCache(cacheName = CACHE_NAME) {
  return typeof caches !== "undefined" && caches.delete(cacheName);
}
