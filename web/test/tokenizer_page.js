// Browser entry for web/test/tokenizer_in_chromium.mjs: the page's tokenizer as the page will
// bundle it (web_tokenizers.js + tokenizer.js through esbuild), exposed to the test.
import { Tokenizer } from "../src/web_tokenizers.js";
import { ClipTokenizer } from "../src/tokenizer.js";

window.tokenizePrompts = async (prompts) => {
  const [json, config] = await Promise.all([
    fetch("/tokenizer.json").then((r) => r.arrayBuffer()),
    fetch("/tokenizer_config.json").then((r) => r.json()),
  ]);
  const tok = await ClipTokenizer.load(Tokenizer, json, config);
  try {
    return prompts.map((p) => Array.from(tok.encode(p)));
  } finally {
    tok.dispose();
  }
};
