#!/bin/sh
# Set up this checkout for the build and the tests: the README's first command runs it.
#
#   1. System packages (Debian bookworm, apt, as root): emscripten (the wasm toolchain),
#      Mesa 25's lavapipe from bookworm-backports (the Vulkan driver Dawn and Chromium use for
#      WebGPU without a GPU), Chromium (the page's tests), nginx-light (the remote-cache tests'
#      HTTP server), Node.js and npm when there is none. What nothing but the system serves;
#      the rest comes from the package registries below.
#   2. .venv with the Python packages pinned in pyproject.toml (PyPI), and open-clip-torch
#      without its dependencies: its wheel carries the real CLIP BPE vocabulary.
#   3. web/node_modules from web/package-lock.json (npm): Dawn for Node, esbuild, the tvmjs
#      runtime, playwright-core.
#
# Run again, it installs only what is missing. Without apt or root, the system packages must be
# there already; what is missing is named in one line with the fix.
set -eu
cd "$(dirname "$0")/../.."

missing=""
command -v emcc > /dev/null || missing="$missing emscripten"
command -v chromium > /dev/null || missing="$missing chromium"
command -v nginx > /dev/null || missing="$missing nginx-light"
command -v node > /dev/null && command -v npm > /dev/null || missing="$missing nodejs npm"
mesa=$(dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2> /dev/null || true)
mesa_major=$(echo "${mesa#*:}" | cut -d. -f1)
[ "${mesa_major:-0}" -ge 25 ] 2> /dev/null || missing="$missing mesa-vulkan-drivers(25)"

if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
    echo "setup: missing system packages:$missing; fix: run this as root on Debian bookworm" \
         "(apt-get), or install them yourself (Mesa 25 from bookworm-backports)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      > /etc/apt/sources.list.d/websd-backports.sources
  fi
  echo "setup: apt-get install:$missing"
  apt-get update -qq
  system="emscripten chromium nginx-light"
  command -v npm > /dev/null || system="$system nodejs npm"
  apt-get install -y -qq $system > /dev/null
  apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 > /dev/null
fi

echo "setup: .venv (pip install -e '.[test]')"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
.venv/bin/pip install -q --no-deps open-clip-torch
echo "setup: web/node_modules (npm ci)"
(cd web && npm ci --silent)
echo "setup: done"
