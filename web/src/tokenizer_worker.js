// tokenizer_worker.js: the page's tokenizer, in a Web Worker (bundled on its own by the bundle
// stage: dist/<model>/<target>/tokenizer_worker.js, a classic worker script).
//
// Loading the CLIP tokenizer is the page's longest piece of JavaScript: its wasm BPE (npm
// @mlc-ai/web-tokenizers, 4.7 MB of the bundle) compiles when the package is evaluated, and
// tokenizer.json (3.6 MB for CLIP) is parsed twice. Here it blocks no input or paint of the
// page; web/src/tokenizer_thread.js is the page's side. Messages, each answered with the same id:
//   {id, load: {json (ArrayBuffer of tokenizer.json), config (tokenizer_config.json, parsed)}}
//       -> {id, special: {bos, eos, pad, maxLength}}
//   {id, encode: text} -> {id, ids: Int32Array}      {id, count: text} -> {id, count: n}
//   failures -> {id, error: message}
import { ClipTokenizer } from "./tokenizer.js";
import { Tokenizer } from "./web_tokenizers.js";

let tokenizer = null;

self.onmessage = async ({ data }) => {
  const { id } = data;
  try {
    if (data.load) {
      tokenizer = await ClipTokenizer.load(Tokenizer, data.load.json, data.load.config);
      self.postMessage({ id, special: tokenizer.special });
    } else if ("encode" in data) {
      const ids = tokenizer.encode(data.encode);
      self.postMessage({ id, ids }, [ids.buffer]);
    } else if ("count" in data) {
      self.postMessage({ id, count: tokenizer.count(data.count) });
    } else {
      throw new Error(`unknown request ${JSON.stringify(Object.keys(data))}`);
    }
  } catch (e) {
    self.postMessage({ id, error: e.message });
  }
};
