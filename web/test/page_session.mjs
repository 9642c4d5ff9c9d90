// One visit of the page in headless Chromium with WebGPU, as tests/test_page.py needs it.
//
//   node web/test/page_session.mjs ORIGIN JOB.json > report.json
//
// ORIGIN serves the built model directory (index.html, app.js, manifest.json, ...).
// JOB.json: {route: "swiftshader" | "lavapipe" (web/test/chromium.mjs), artifacts: a directory,
//   screenshotAfter: the image after which page.png and image.png are taken and Save PNG is
//   pressed (saved.png),
//   images: [{name, opts, initImage?, drop?}] generated on the first load (initImage: a PNG
//   path chosen with the file input, or dropped on the page with drop: true, before the run;
//   null removes the chosen one), invalid: [{name, opts}] that the page
//   must refuse, reload: opts generated again after a reload (all from the Cache API) and after
//   tampering with one cached shard, cancel: opts of a long run cancelled at step 2}; invalid,
//   cancel and reload are each left out of the visit when the job leaves them out.
// The page is driven through its documented hook (window.websd, web/src/app.js). Prints one
// JSON report; every part records what the page showed, so the Python test asserts on it.
import fs from "node:fs";
import path from "node:path";
import { launch } from "./chromium.mjs";

const [origin, jobPath] = process.argv.slice(2);
const job = JSON.parse(fs.readFileSync(jobPath, "utf8"));
const route = job.route || "swiftshader";
// the plain URL a user opens: on the lavapipe route the page itself prefers the
// compatibility-mode adapter (lavapipe) to the core one (SwiftShader, a software fallback)
const url = `${origin}/`;
const report = { console: [], pageErrors: [] };
const requests = [];

const pageText = (page) => page.evaluate(() => ({
  gpuError: document.getElementById("gpu-error").hidden ? "" : document.getElementById("gpu-error").textContent,
  message: document.getElementById("message").textContent,
  download: document.getElementById("download-text").textContent,
  load: document.getElementById("load-text").textContent,
  denoise: document.getElementById("denoise-text").textContent,
  precision: document.getElementById("precision").textContent,
  adapter: document.getElementById("adapter").textContent,
  imageSize: document.getElementById("image-size").textContent,
  gpuMemory: document.getElementById("gpu-memory").textContent,
  downloadSize: document.getElementById("download-size").textContent,
  generateDisabled: document.getElementById("generate").disabled,
  schedulers: [...document.getElementById("scheduler").options].map((o) => o.textContent),
  sizes: [...document.getElementById("size").options].map((o) => o.value),
  tokens: document.getElementById("tokens").textContent,
  settingsLocked: ["prompt", "seed", "scheduler"].every((id) => document.getElementById(id).disabled),
  saveDisabled: document.getElementById("save").disabled,
}));

// The canvas's pixels (RGBA), to check what the page shows.
const canvasPixels = (page) => page.evaluate(() => {
  const c = document.getElementById("image");
  return Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data);
});

async function open(page) {
  await page.goto(url);
  await page.waitForFunction(() => window.websd, null, { timeout: 60000 });
  await page.evaluate(() => window.websd.ready);
}

// page.evaluate rejects with the page's Error message; keep it as data
async function generate(page, opts) {
  const t0 = Date.now();
  try {
    const r = await page.evaluate((o) => window.websd.generate(o), opts);
    return { ok: true, wallMs: Date.now() - t0, ...r };
  } catch (e) {
    return { ok: false, error: e.message.split("\n")[0], wallMs: Date.now() - t0 };
  }
}

const status = (page) => page.evaluate(() => window.websd.status());

// The image to start from, as a user gives it: the file picker, or a file dropped on the page.
async function chooseImage(page, file, drop) {
  if (file === null) {
    await page.click("#init-clear");
    await page.waitForFunction(() => window.websd.status().initImage === null);
    return;
  }
  if (drop) {
    const bytes = [...fs.readFileSync(file)];
    await page.evaluate(([b, name]) => {
      const data = new DataTransfer();
      data.items.add(new File([new Uint8Array(b)], name, { type: "image/png" }));
      const target = document.getElementById("init-drop");
      for (const type of ["dragenter", "dragover", "drop"]) {
        target.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
      }
    }, [bytes, path.basename(file)]);
  } else {
    await page.setInputFiles("#init-image", file);
  }
  await page.waitForFunction((name) => window.websd.status().initImage?.name === name,
    path.basename(file), { timeout: 20000 });
}
const binRequests = () => requests.filter((u) => u.endsWith(".bin"));

const t0 = Date.now();
const browser = await launch(route);
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.on("console", (m) => report.console.push(`${m.type()}: ${m.text()}`.slice(0, 500)));
  page.on("pageerror", (e) => report.pageErrors.push(e.message));
  page.on("request", (r) => requests.push(r.url()));

  // 1. An adapter below the model's limits: the page says which limit, needed and available.
  await page.route("**/manifest.json", async (route) => {
    const res = await route.fetch();
    const manifest = await res.json();
    for (const need of Object.values(manifest.requirements)) need.maxStorageBufferBindingSize = 2 ** 40;
    await route.fulfill({ response: res, json: manifest });
  });
  await open(page);
  report.limits = { page: await pageText(page), status: await status(page) };
  await page.unroute("**/manifest.json");

  // 2. First load: every shard from the network; one image per scheduler.
  requests.length = 0;
  await open(page);
  report.start = { page: await pageText(page), status: await status(page) };
  report.images = [];
  for (const { name, opts, initImage, drop } of job.images) {
    if (initImage !== undefined) await chooseImage(page, initImage, drop);
    const r = await generate(page, opts);
    report.images.push({ name, opts, ...r, page: await pageText(page),
      initImage: (await status(page)).initImage });
    if (name === job.screenshotAfter) {
      const shot = path.join(job.artifacts, "page.png");
      await page.screenshot({ path: shot, fullPage: true });
      await page.locator("#image").screenshot({ path: path.join(job.artifacts, "image.png") });
      report.screenshot = shot;
      const [download] = await Promise.all([page.waitForEvent("download"), page.click("#save")]);
      report.saved = { name: download.suggestedFilename(), path: path.join(job.artifacts, "saved.png") };
      await download.saveAs(report.saved.path);
      // a second save of the same image: another name
      const [again] = await Promise.all([page.waitForEvent("download"), page.click("#save")]);
      report.saved.again = again.suggestedFilename();
    }
  }
  report.firstLoad = { files: (await status(page)).files, binRequests: binRequests(),
    load: (await status(page)).load, longTasks: (await status(page)).longTasks,
    readyAt: (await status(page)).readyAt };

  // 3-7 run where the job names them (a job of images alone checks a model's pictures)
  if (job.invalid) {
    // 3. Refused settings: a message, and no generation.
    report.invalid = [];
    for (const { name, opts } of job.invalid) {
      const [before, pageBefore] = [(await status(page)).phase, await pageText(page)];
      const r = await generate(page, opts);
      report.invalid.push({ name, opts, ...r, phaseBefore: before, pageBefore, page: await pageText(page),
        status: await status(page),
        phaseAfter: (await status(page)).phase });
    }
  }

  if (job.history) {
    // 3a. The strip of this visit's images: the first one shown again, its settings back.
    report.history = { count: (await status(page)).history };
    await page.click("#history button:first-child");
    report.history.canvas = await canvasPixels(page);
    report.history.form = (await status(page)).form;
  }

  if (job.restore) {
    // 3b. The saved PNG dropped on the page: its settings come back into the form.
    await page.fill("#prompt", "something else");
    await page.fill("#seed", "99");
    const bytes = [...fs.readFileSync(report.saved.path)];
    await page.evaluate(([b, name]) => {
      const data = new DataTransfer();
      data.items.add(new File([new Uint8Array(b)], name, { type: "image/png" }));
      for (const type of ["dragover", "drop"]) {
        document.getElementById("image").dispatchEvent(
          new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
      }
    }, [bytes, report.saved.name]);
    await page.waitForFunction(() => /restored/.test(document.getElementById("message").textContent),
      null, { timeout: 10000 });
    report.restore = { page: await pageText(page), form: (await status(page)).form };
  }

  if (job.cancel) {
    // 4. Cancel a long run once it is under way.
    const before = await canvasPixels(page);
    const cancelRun = generate(page, job.cancel);
    await Promise.race([cancelRun, page.waitForFunction(
      () => /step [2-9]/.test(document.getElementById("denoise-text").textContent),
      null, { timeout: 60000, polling: 50 })]);
    report.cancelRunning = await pageText(page);
    await page.evaluate(() => window.websd.cancel());
    report.cancel = { ...(await cancelRun), page: await pageText(page) };
    // the last finished image is back on the canvas
    report.cancel.canvasKept = JSON.stringify(await canvasPixels(page)) === JSON.stringify(before);
  }

  if (job.narrow) {
    // 4b. A phone's width: the image first, every field inside the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    report.narrow = await page.evaluate(() => {
      const box = (id) => document.getElementById(id).getBoundingClientRect();
      return { imageTop: box("image").top, formTop: box("form").top,
        rightmost: Math.max(...["seed", "scheduler", "steps", "guidance", "generate", "strength"]
          .map((id) => box(id).right)),
        width: document.documentElement.clientWidth,
        scrollWidth: document.documentElement.scrollWidth };
    });
    await page.screenshot({ path: path.join(job.artifacts, "narrow.png"), fullPage: true });
    await page.setViewportSize({ width: 1100, height: 900 });
  }

  if (job.keyboard) {
    // 4d. The keyboard: Tab walks the form in order; Ctrl+Enter generates from the prompt;
    // Escape cancels; every control has a name a screen reader says.
    report.keyboard = { unnamed: await page.evaluate(() => [...document.querySelectorAll(
      "input, select, textarea, button, progress, canvas")].filter((el) => !(
      el.closest("[aria-hidden=true]")
      || el.getAttribute("aria-label")?.trim()
      || (el.id && document.querySelector(`label[for="${el.id}"]`)?.textContent.trim())
      || (el.tagName === "BUTTON" && el.textContent.trim()))).map((el) => el.id || el.tagName)) };
    // the controls a user can reach, in document order, from the prompt on
    report.keyboard.focusable = await page.evaluate(() => {
      const all = [...document.querySelectorAll("textarea, input, select, button")]
        .filter((el) => !el.disabled && el.offsetParent !== null).map((el) => el.id);
      return all.slice(all.indexOf("prompt"));
    });
    await page.focus("#prompt");
    report.keyboard.tabOrder = ["prompt"];
    for (let k = 0; k < 12; k++) {
      await page.keyboard.press("Tab");
      report.keyboard.tabOrder.push(await page.evaluate(() => document.activeElement?.id ?? ""));
    }
    const o = job.keyboard;
    // text-to-image: the visit's images left an image to start from chosen
    if ((await status(page)).initImage) await chooseImage(page, null);
    for (const [id, value] of [["prompt", o.prompt], ["negative-prompt", o.negativePrompt],
      ["seed", String(o.seed)], ["steps", String(o.steps)], ["guidance", String(o.guidance)]]) {
      await page.fill(`#${id}`, value);
    }
    await page.selectOption("#scheduler", o.scheduler);
    await page.focus("#prompt");
    await page.keyboard.press("Control+Enter");
    await page.waitForFunction(() => /^(Done|Failed)/.test(document.getElementById("message").textContent),
      null, { timeout: 120000 });
    report.keyboard.generated = { page: await pageText(page), pixels: await canvasPixels(page) };
    await page.fill("#steps", "50");
    await page.keyboard.press("Control+Enter");
    await page.waitForFunction(() => /step [2-9]/.test(document.getElementById("denoise-text").textContent),
      null, { timeout: 60000, polling: 50 });
    const t = Date.now();
    await page.keyboard.press("Escape");
    await page.waitForFunction(() => /^Cancelled/.test(document.getElementById("message").textContent),
      null, { timeout: 10000, polling: 20 });
    report.keyboard.cancelled = { cancelMs: Date.now() - t, page: await pageText(page) };
  }

  if (job.cancelLoad) {
    // 4c. Cancel while the model loads (a fresh page): the run ends within a second.
    await open(page);
    const run = generate(page, job.cancelLoad);
    await page.waitForFunction(() => /^Loading:/.test(document.getElementById("load-text").textContent),
      null, { timeout: 60000, polling: 20 });
    const t = Date.now();
    await page.evaluate(() => window.websd.cancel());
    const r = await run;
    report.cancelLoad = { ...r, cancelMs: Date.now() - t, page: await pageText(page) };
  }

  if (job.reload) {
    // 5. Reload: every file from the Cache API, no .bin request.
    requests.length = 0;
    await open(page);
    const reloadRun = await generate(page, job.reload);
    report.reload = { ...reloadRun, files: (await status(page)).files, binRequests: binRequests(),
      page: await pageText(page), load: (await status(page)).load,
      longTasks: (await status(page)).longTasks, readyAt: (await status(page)).readyAt };

    // 6. A cached shard with wrong bytes: deleted, fetched again, and the image is unchanged.
    report.tamper = await page.evaluate(async () => {
      const cache = await caches.open(window.websd.cacheName);
      const keys = (await cache.keys()).map((r) => r.url).filter((u) => /\/unet\/params\/.*\.bin$/.test(u));
      const victim = keys[0];
      const size = (await (await cache.match(victim)).arrayBuffer()).byteLength;
      await cache.put(victim, new Response(new Uint8Array(size).fill(7)));
      return { url: victim, size };
    });
    requests.length = 0;
    await open(page);
    const tamperRun = await generate(page, job.reload);
    Object.assign(report.tamper, tamperRun, { files: (await status(page)).files,
      binRequests: binRequests(), page: await pageText(page) });

    // 7. A lost device: the page says so, and the next Generate starts again.
    await page.evaluate(() => window.websd.loseDevice());
    await page.waitForFunction(() => !document.getElementById("gpu-error").hidden, null, { timeout: 20000 });
    report.lost = { page: await pageText(page) };
    const afterLost = await generate(page, job.reload);
    Object.assign(report.lost, { after: afterLost, pageAfter: await pageText(page) });
  }
} catch (e) {
  // the report so far says where it stopped; the test fails on `error`
  report.error = `${e.name}: ${e.message}`.slice(0, 2000);
} finally {
  await browser.close();
}
report.wallSeconds = (Date.now() - t0) / 1000;
process.stdout.write(JSON.stringify(report));
