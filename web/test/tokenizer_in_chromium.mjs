// Tokenize prompts in headless Chromium with the esbuild bundle of the page's tokenizer.
//
//   node web/test/tokenizer_in_chromium.mjs TOKENIZER_DIR < prompts.json > ids.json
//
// The same contract as web/test/tokenize.mjs (Node), but through the browser build: this is
// what proves that web/src/web_tokenizers.js bundles and runs. No WebGPU is used.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { launch, serve } from "./chromium.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = process.argv[2];
const prompts = JSON.parse(fs.readFileSync(0, "utf8"));

const bundle = await esbuild.build({
  entryPoints: [path.join(here, "tokenizer_page.js")],
  bundle: true, format: "esm", platform: "browser", write: false, logLevel: "error",
  external: ["url", "module"],
});
const server = await serve({
  "/": '<!doctype html><script type="module" src="/app.js"></script>',
  "/app.js": bundle.outputFiles[0].contents,
  "/tokenizer.json": fs.readFileSync(path.join(dir, "tokenizer.json")),
  "/tokenizer_config.json": fs.readFileSync(path.join(dir, "tokenizer_config.json")),
});
const browser = await launch("swiftshader");
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${server.origin}/`);
  await page.waitForFunction(() => window.tokenizePrompts || null, null, { timeout: 30000 })
    .catch(() => { throw new Error(`the bundle did not load: ${errors.join("; ")}`); });
  const ids = await page.evaluate((p) => window.tokenizePrompts(p), prompts);
  process.stdout.write(JSON.stringify(ids));
} finally {
  await browser.close();
  await server.close();
}
