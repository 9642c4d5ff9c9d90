// The Tokenizer class of npm @mlc-ai/web-tokenizers, loaded in Node.
//
// The package's lib/index.js is a UMD bundle with an Emscripten loader that, outside a
// browser, calls CommonJS `require` and reads `__filename`; but its package.json says
// "type": "module", so `import` runs it as ESM (ReferenceError: require is not defined) and
// `require` hands back an empty ESM namespace. So compile the file as CommonJS ourselves,
// with Node's own CommonJS module machinery (Module#_compile, which also gives the file a
// working dynamic import(), unlike node:vm without a flag). In the page, esbuild bundles it
// instead (web/src/web_tokenizers.js).
import fs from "node:fs";
import path from "node:path";
import Module, { createRequire } from "node:module";

let cached;

export function loadWebTokenizers() {
  if (!cached) {
    const filename = createRequire(import.meta.url).resolve("@mlc-ai/web-tokenizers");
    const mod = new Module(filename);
    mod.filename = filename;
    mod.paths = Module._nodeModulePaths(path.dirname(filename));
    mod._compile(fs.readFileSync(filename, "utf8"), filename);
    cached = mod.exports.Tokenizer;
    if (typeof cached?.fromJSON !== "function") {
      throw new Error(`${filename} did not export Tokenizer.fromJSON when run as CommonJS`);
    }
  }
  return cached;
}
