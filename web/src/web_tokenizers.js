// web_tokenizers.js: the Tokenizer class of npm @mlc-ai/web-tokenizers, for the page bundle.
//
// That package is a UMD file inside a "type": "module" package, so esbuild (like Node)
// treats it as an ES module without exports: imported for its side effect, it sets
// globalThis.tokenizers = { Tokenizer }. This module hands that class on; tokenizer.js never
// imports the package itself, because Node cannot import it as ESM (its Emscripten loader
// needs CommonJS `require`); web/test/web_tokenizers_node.mjs loads it in Node instead.
// Bundle with esbuild --platform=browser --external:url --external:module: the package's
// Node-only branches name those built-ins and never run in a browser.
// tests/test_web_tokenizer.py bundles this file so (web/test/tokenizer_in_chromium.mjs)
// and checks its ids in Chromium.
import "@mlc-ai/web-tokenizers";

export const Tokenizer = globalThis.tokenizers?.Tokenizer;
if (typeof Tokenizer?.fromJSON !== "function") {
  throw new Error("@mlc-ai/web-tokenizers did not set globalThis.tokenizers.Tokenizer; " +
    "did esbuild start treating its UMD file as CommonJS? (see web/src/web_tokenizers.js)");
}
