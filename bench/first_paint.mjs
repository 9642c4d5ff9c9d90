// The page's first visit up to "ready", per bundle, in headless Chromium (lavapipe route):
// first contentful paint, when window.websd.ready settled, the main thread's long tasks until
// then. Each run is a fresh browser context (an empty HTTP cache), the bundles interleaved.
//
//   node bench/first_paint.mjs JOB.json > result.json
//   JOB.json: {runs: 5, pages: {name: directory served as the page's origin}}
// Driven by bench/first_paint.py, which builds the bundles of the commits it compares.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { launch } from "../web/test/chromium.mjs";

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".json": "application/json",
  ".wasm": "application/wasm" };

function serveDir(dir) {
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/\/$/, "/index.html");
    const file = path.join(dir, rel);
    if (!file.startsWith(dir) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] || "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({
    origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() })));
}

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const servers = Object.fromEntries(await Promise.all(Object.entries(job.pages)
  .map(async ([name, dir]) => [name, await serveDir(path.resolve(dir))])));
const browser = await launch("lavapipe");
const out = Object.fromEntries(Object.keys(job.pages).map((n) => [n, []]));
try {
  for (let run = 0; run < job.runs; run++) {
    for (const [name, server] of Object.entries(servers)) {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.addInitScript(() => {
        window.__longTasks = [];
        new PerformanceObserver((l) => {
          for (const e of l.getEntries()) window.__longTasks.push(Math.round(e.duration));
        }).observe({ type: "longtask", buffered: true });
        // when app.js's ready promise settles (polled for until app.js has defined it)
        const poll = setInterval(() => {
          if (!window.websd) return;
          clearInterval(poll);
          window.websd.ready.then(() => { window.__readyMs = performance.now(); });
        }, 2);
      });
      await page.goto(`${server.origin}/`);
      await page.waitForFunction(() => window.websd, null, { timeout: 60000 });
      out[name].push(await page.evaluate(async () => {
        await window.websd.ready;
        await new Promise((r) => setTimeout(r, 10));
        const readyMs = window.__readyMs;
        const fcp = performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? null;
        return { fcpMs: fcp && Math.round(fcp), readyMs: Math.round(readyMs),
          longTasks: window.__longTasks.slice(), phase: window.websd.status().phase };
      }));
      await context.close();
    }
  }
} finally {
  await browser.close();
  for (const s of Object.values(servers)) s.close();
}
process.stdout.write(JSON.stringify(out));
