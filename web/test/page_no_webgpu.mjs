// The page in a Chromium without usable WebGPU, as tests/test_page.py needs it.
//
//   node web/test/page_no_webgpu.mjs ORIGIN > report.json
//
// Chromium on Linux without --enable-unsafe-webgpu has navigator.gpu but no adapter; a browser
// without WebGPU at all has no navigator.gpu, which the second page reproduces by hiding it
// before the page's scripts run. Prints {noAdapter, noNavigatorGpu}, each what the page showed.
import { chromium } from "playwright-core";
import { CHROMIUM } from "./chromium.mjs";

const origin = process.argv[2];
// chromium.mjs's arguments minus --enable-unsafe-webgpu
const ARGS = ["--headless=new", "--no-sandbox", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
  "--disable-dev-shm-usage"];

async function visit(context, hideGpu) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  if (hideGpu) {
    await page.addInitScript(() => {
      Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined, configurable: true });
    });
  }
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => window.websd, null, { timeout: 60000 });
  await page.evaluate(() => window.websd.ready);
  const generate = await page.evaluate(() => window.websd.generate({ steps: 1 })
    .then(() => "generated", (e) => e.message));
  const shown = await page.evaluate(() => ({
    hasNavigatorGpu: !!navigator.gpu,
    gpuErrorVisible: !document.getElementById("gpu-error").hidden,
    gpuError: document.getElementById("gpu-error").textContent,
    generateDisabled: document.getElementById("generate").disabled,
    status: window.websd.status(),
  }));
  await page.close();
  return { ...shown, generate, pageErrors: errors };
}

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
try {
  const context = await browser.newContext();
  const report = { noAdapter: await visit(context, false), noNavigatorGpu: await visit(context, true) };
  process.stdout.write(JSON.stringify(report));
} finally {
  await browser.close();
}
