// Headless Chromium for the page's tests: a local HTTP server and the two WebGPU routes.
//
// There is no GPU on the build machines, so WebGPU in Chromium runs on the CPU, by one of
// two routes (docs/DESIGN.md, "Web toolchain"):
//   swiftshader: --enable-unsafe-webgpu alone; Dawn's Vulkan backend on SwiftShader.
//   lavapipe:    --use-angle=vulkan --use-webgpu-adapter=opengles and
//                requestAdapter({featureLevel: "compatibility"}); Dawn's OpenGL ES backend on
//                ANGLE on Mesa's lavapipe (needs mesa-vulkan-drivers, Mesa 25).
// Chromium is Debian's (/usr/bin/chromium), driven by playwright-core, which never downloads
// a browser. Pages are served from http://127.0.0.1:<random free port>, a secure context,
// so crypto.subtle and the Cache API are there as they are on a real https origin.
import http from "node:http";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.WEBSD_CHROMIUM || "/usr/bin/chromium";

const COMMON_ARGS = [
  "--headless=new",
  "--no-sandbox",                       // we run as root in a container
  "--enable-unsafe-webgpu",             // WebGPU on Linux is behind this flag
  "--disable-background-networking",   // no update checks, no component downloads
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-dev-shm-usage",
];

export const ROUTES = {
  swiftshader: { args: [], adapterOptions: {} },
  lavapipe: {
    args: ["--use-angle=vulkan", "--use-webgpu-adapter=opengles"],
    adapterOptions: { featureLevel: "compatibility" },
  },
};

export function launch(route) {
  if (!ROUTES[route]) throw new Error(`unknown WebGPU route ${route}; one of ${Object.keys(ROUTES)}`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...COMMON_ARGS, ...ROUTES[route].args],
  });
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
  ".json": "application/json", ".wasm": "application/wasm" };

/**
 * Serve a map of URL path -> body (string or bytes) on 127.0.0.1, a free port picked by the
 * OS (a path ending in / is HTML). Resolves to { origin, close() }; other paths get 404.
 */
export function serve(files) {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const body = files[path];
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    const ext = path.endsWith("/") ? ".html" : path.slice(path.lastIndexOf("."));
    res.writeHead(200, { "content-type": TYPES[ext] || "application/octet-stream",
      "cache-control": "no-store" });
    res.end(body);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({ origin: `http://127.0.0.1:${port}`,
        close: () => new Promise((r) => server.close(r)) });
    });
  });
}
