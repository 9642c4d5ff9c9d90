#!/bin/bash
# One device call on the lent NVIDIA H200: time one SD v1.5 UNet step (CFG batch 2, 64x64 latents)
# as our webgpu build (Dawn in Node over the NVIDIA Vulkan driver), as our cuda build (TVM's
# runtime) and as PyTorch (eager fp32, fp16, torch.compile fp16), and check our builds against
# PyTorch float64 on the same weights. Run from the repo root, with `.gpu` carried
# (bench/gpu/README.md):
#
#   bash bench/gpu/run_on_device.sh [BUILD_DIR ...]
#
# Each BUILD_DIR is one emitted UNet variant (or another component's, with a file `inputs` that
# names its inputs for webgpu_unet_step.mjs --inputs: timed and its memory read, not checked): a webgpu one holds one *.wasm, a cuda one one *.so
# (either may come as *.xz), each beside params/tensor-cache.json (shapes only: the shards need not travel). With a cuda dir
# or CHECK=1 (the default when .gpu/tvm-runtime.tar.xz is there) bench/gpu/tvm_unet_step.py runs
# first: it draws the model's weights here, times the cuda dirs, and writes the weights and the
# float64 reference for the webgpu runs, which then load those weights (--check) and report their
# rel-L2. With no BUILD_DIR only the Dawn probes and torch run. Writes into $OUT (at most 8
# files): run.log, probe.json (Dawn defaults), probe_f16.json (with $DAWN_FEATURES),
# webgpu_<dir name>.json per wasm dir, tvm_unet_step.json, torch_unet_step.json, summary.json;
# prints a table last. Knobs (env): CHECK (0/1), TVM_ARGS (extra arguments), DAWN_FEATURES
# (Dawn toggles for the wasm runs; default vulkan_enable_f16_on_nvidia: without it Dawn hides
# shader-f16 on NVIDIA's Vulkan driver), TORCH_VARIANTS (default all five),
# TORCH_ITERS (30), WEBGPU_ITERS (20), TORCH_ARGS / WEBGPU_ARGS (extra arguments), SKIP_TORCH=1,
# KERNEL_CASES (a bench/gpu/kernel_cases.py file: run bench/gpu/wgsl_kernels.mjs on it, with KERNEL_ARGS, at most
# KERNEL_TIMEOUT_S, 240), TTI_DIST (a dist/<model>/webgpu dir without its *.bin, its libraries
# maybe xz'd: fill its shards here, then bench/gpu/time_to_image.mjs and
# diffusers_time_to_image.py; TTI_MODEL, TTI_ARGS, TTI_TORCH_ARGS),
# SKIP_PROBE=1, SKIP_DEBS=1 (dry run off the device), DEADLINE_S (540: the whole run stays inside
# one 10-minute command), PYTHON (python3).
set -u
START=$(date +%s)
DEADLINE_S=${DEADLINE_S:-540}
OUT=${OUT:-/tmp/websd-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
REPO=$(pwd)
P=$REPO/.gpu
W=/tmp/websd
PY=${PYTHON:-python3}
mkdir -p $W
left() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }
say() { echo "[$(( $(date +%s) - START )) s] $*"; }
unxz_to() { # unxz_to SRC DST: xz if there, else Python's lzma (DST's folder made first)
  mkdir -p "$(dirname "$2")"
  if command -v xz >/dev/null; then xz -dc "$1" > "$2"
  else $PY -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; fi
}

say "environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu --format=csv
  uname -a; cat /etc/os-release 2>/dev/null | head -2
  $PY -c 'import sys, torch; print("python", sys.version.split()[0], sys.executable); print("torch", torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'
  ldconfig -p | grep -c libvulkan || true
  ls /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null
} 2>&1

# ---- Vulkan loader + libglvnd (Debian debs) and the NVIDIA ICD ----------------------------------
if [ "${SKIP_DEBS:-0}" != 1 ]; then  # SKIP_DEBS=1 for a dry run off the device: never unpack here
  for f in "$P"/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
ICD=""
for c in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
         /etc/vulkan/icd.d/nvidia_icd.json; do
  [ -f "$c" ] && { ICD=$c; break; }
done
[ -n "$ICD" ] && export VK_DRIVER_FILES=$ICD
[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && \
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
say "VK_DRIVER_FILES=${VK_DRIVER_FILES:-<none found>}"

# ---- Node (self-contained NodeSource build, stripped) and dawn.node -----------------------------
unxz_to "$P/node.xz" $W/node && chmod +x $W/node
rm -rf $W/node_modules && cp -r "$P/node_modules" $W/node_modules
unxz_to "$P/dawn.node.xz" $W/node_modules/webgpu/dist/linux-x64/dawn.node
export WEBSD_NODE_MODULES=$W/node_modules
# the page's modules (web/src, which the benches run) import their packages by name, from web/node_modules
[ -e web/node_modules ] || ln -s "$W/node_modules" web/node_modules
DAWN_FEATURES=${DAWN_FEATURES-vulkan_enable_f16_on_nvidia,allow_unsafe_apis}
DF=(); [ -n "$DAWN_FEATURES" ] && DF=(--dawn-features "$DAWN_FEATURES")
say "node $($W/node --version)"

# ---- PyTorch's side packages (diffusers) and TVM's runtime (no compiler) ------------------------
# time to image also needs transformers (diffusers' pipeline runs the CLIP text model): whl-tti
TTI_WHL=(); [ -n "${TTI_DIST:-}" ] && [ -d "$P/whl-tti" ] && TTI_WHL=("$P"/whl-tti/*.whl)
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$P"/whl/*.whl "${TTI_WHL[@]}" && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
WASM_DIRS=(); SO_DIRS=()
for d in "$@"; do   # a build dir may carry its library xz-compressed (x.wasm.xz): 20x smaller
  for z in "$d"/*.xz; do [ -f "$z" ] && [ ! -f "${z%.xz}" ] && unxz_to "$z" "${z%.xz}"; done
done
OTHER_DIRS=()   # another component's wasm dir: a file `inputs` there names its inputs
for d in "$@"; do
  if ls "$d"/*.so >/dev/null 2>&1; then SO_DIRS+=("$d")
  elif [ -f "$d/inputs" ]; then OTHER_DIRS+=("$d")
  else WASM_DIRS+=("$d"); fi
done
CHECK=${CHECK:-$([ -f "$P/tvm-runtime.tar.xz" ] && echo 1 || echo 0)}
CHECK_DIR=$W/check
if [ ${#SO_DIRS[@]} -gt 0 ] || [ "$CHECK" = 1 ]; then
  mkdir -p $W/tvmrt && unxz_to "$P/tvm-runtime.tar.xz" $W/tvmrt.tar && tar -xf $W/tvmrt.tar -C $W/tvmrt
  CK=(); [ "$CHECK" = 1 ] && CK=(--check-dir "$CHECK_DIR" --webgpu "${WASM_DIRS[@]}")
  # what the later steps need: torch's 300 s, or a minute per wasm dir without it
  reserve=300; [ "${SKIP_TORCH:-0}" = 1 ] && reserve=$(( 60 * ${#WASM_DIRS[@]} + 30 ))
  t=$(( $(left) - reserve )); [ $t -gt 240 ] && t=240
  if [ $t -lt 30 ]; then
    say "skip tvm + check data: ${t}s left for it (raise DEADLINE_S)"
  else
    say "tvm + check data (timeout ${t}s)"
    TVM_USE_RUNTIME_LIB=1 PYTHONPATH=$W/tvmrt:$PYTHONPATH PYTHONUNBUFFERED=1 timeout $t \
      $PY bench/gpu/tvm_unet_step.py --out "$OUT/tvm_unet_step.json" --cuda "${SO_DIRS[@]}" \
      "${CK[@]}" --iters "${TORCH_ITERS:-30}" ${TVM_ARGS:-}
    say "tvm rc=$?"
  fi
fi

# ---- the WGSL kernel microbenchmark (bench/gpu/kernel_cases.py writes KERNEL_CASES) ----------
if [ -n "${KERNEL_CASES:-}" ]; then
  say "wgsl_kernels $KERNEL_CASES"
  t=$(( $(left) - 20 )); [ $t -gt "${KERNEL_TIMEOUT_S:-240}" ] && t=${KERNEL_TIMEOUT_S:-240}
  timeout $t $W/node bench/gpu/wgsl_kernels.mjs "$KERNEL_CASES" "$OUT/wgsl_kernels.json" \
    --dawn-features "allow_unsafe_apis,${DAWN_FEATURES}" ${KERNEL_ARGS:-} 2>&1 | grep -v 'artificially reduced'
  say "wgsl_kernels rc=${PIPESTATUS[0]}"
  if grep -q '"kind": "attention"' "$KERNEL_CASES"; then
    timeout 120 $PY bench/gpu/torch_attention.py "$OUT/torch_attention.json"
    say "torch_attention rc=$?"
  fi
fi

# ---- WebGPU: probe, then each wasm dir ----------------------------------------------------------
if [ "${SKIP_PROBE:-0}" != 1 ]; then
  say "Dawn probe (defaults)"
  timeout 60 $W/node bench/gpu/webgpu_unet_step.mjs probe "$OUT/probe.json"
  say "probe rc=$?"
  if [ -n "$DAWN_FEATURES" ]; then
    say "Dawn probe (enable-dawn-features=$DAWN_FEATURES)"
    timeout 60 $W/node bench/gpu/webgpu_unet_step.mjs probe "$OUT/probe_f16.json" --dawn-features "$DAWN_FEATURES"
    say "probe rc=$?"
  fi
fi
for d in "${WASM_DIRS[@]}" "${OTHER_DIRS[@]}"; do
  name=$(basename "$d")
  CA=(); [ -f "$CHECK_DIR/params_$name.bin" ] && CA=(--check "$CHECK_DIR")
  [ -f "$d/inputs" ] && CA=(--inputs "$(cat "$d/inputs")")
  t=$(( $(left) - 200 )); [ "${SKIP_TORCH:-0}" = 1 ] && t=$(( $(left) - 10 ))
  [ $t -gt 300 ] && t=300
  if [ $t -lt 30 ]; then say "skip $name: too little time left"; continue; fi
  say "webgpu $name (timeout ${t}s)"
  timeout $t $W/node bench/gpu/webgpu_unet_step.mjs "$d" "$OUT/webgpu_$name.json" \
    --iters "${WEBGPU_ITERS:-20}" "${DF[@]}" "${CA[@]}" ${WEBGPU_ARGS:-} 2>&1 | grep -v 'artificially reduced'
  say "webgpu $name rc=${PIPESTATUS[0]}"
done

# ---- time to image: the page's pipeline vs diffusers (TTI_DIST: a dist dir without its shards) --
if [ -n "${TTI_DIST:-}" ]; then
  t=$(( $(left) - 20 ))
  for z in "$TTI_DIST"/*.xz "$TTI_DIST"/*/*.xz; do   # libraries and large files travel xz'd
    [ -f "$z" ] && unxz_to "$z" "${z%.xz}" && rm "$z"
  done
  say "time to image: fill $TTI_DIST's shards from the model's seed"
  timeout $t $PY bench/gpu/fill_params.py "$TTI_DIST" --model "${TTI_MODEL:-sd-v1-5}"
  t=$(( $(left) - 20 )); [ $t -gt 300 ] && t=300
  say "time to image: webgpu (timeout ${t}s)"
  timeout $t $W/node bench/gpu/time_to_image.mjs "$TTI_DIST" "$OUT/tti_webgpu.json" \
    --dawn-features "$DAWN_FEATURES" ${TTI_ARGS:-} 2>&1 | grep -v 'artificially reduced'
  say "time to image: webgpu rc=${PIPESTATUS[0]}"
  t=$(( $(left) - 10 ))
  say "time to image: diffusers (timeout ${t}s)"
  timeout $t $PY bench/gpu/diffusers_time_to_image.py "$TTI_DIST" "$OUT/tti_diffusers.json" \
    --model "${TTI_MODEL:-sd-v1-5}" ${TTI_TORCH_ARGS:-} 2>&1 | grep -v 'should be kept in float32'
  say "time to image: diffusers rc=${PIPESTATUS[0]}"
fi

# ---- PyTorch ----------------------------------------------------------------------------------
if [ "${SKIP_TORCH:-0}" != 1 ]; then
  t=$(( $(left) - 10 ))
  say "torch (timeout ${t}s)"
  PYTHONUNBUFFERED=1 timeout $t $PY bench/gpu/torch_unet_step.py --out "$OUT/torch_unet_step.json" \
    --variants "${TORCH_VARIANTS:-eager_fp32,eager_fp32_strict,eager_fp16,graph_fp16,compile_fp16}" \
    --iters "${TORCH_ITERS:-30}" ${TORCH_ARGS:-} 2>&1 | grep -v 'should be kept in float32'
  say "torch rc=${PIPESTATUS[0]}"
fi

# ---- summary ----------------------------------------------------------------------------------
$PY - "$OUT" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
PEAK = 790e12
rows, summary = [], {"peak_flops": PEAK, "rows": []}
torch_ref = {}
tp = os.path.join(out, "torch_unet_step.json")
if os.path.exists(tp):
    t = json.load(open(tp))
    summary["torch"] = {"version": t.get("torch"), "device": t.get("device_name")}
    for name, r in t.get("results", {}).items():
        if "median_ms" in r:
            torch_ref[name] = r["median_ms"]
            rows.append(("torch " + name, r["median_ms"], r.get("first_step_s"), t.get("flop_per_step"),
                         r.get("loop_ms")))
        else:
            rows.append(("torch " + name + " FAILED: " + r.get("error", "")[:60], None, None, None, None))
checks = {}
tv = os.path.join(out, "tvm_unet_step.json")
if os.path.exists(tv):
    t = json.load(open(tv))
    summary["torch_fp32_strict_rel_l2"] = t.get("torch_fp32_strict_rel_l2")
    for name, r in t.get("results", {}).items():
        rows.append(("tvm cuda " + name, r["median_ms"], None, 1.61e12, r.get("loop_ms")))
        checks["tvm cuda " + name] = r
for p in sorted(glob.glob(os.path.join(out, "webgpu_*.json"))):
    r = json.load(open(p))
    label = "webgpu " + r.get("label", os.path.basename(p))
    if r.get("check"):
        checks[label] = r["check"]
    if r.get("ok") and "median_ms" in r:
        rows.append((label, r["median_ms"], (r.get("pipeline_compile_ms") or 0) / 1e3,
                     r.get("flop_per_step"), None))
    else:
        why = "setup only" if r.get("setup_only") else "FAILED: " + str(r.get("error", ""))[:200]
        rows.append((label + " " + why, None, None, None, None))
for probe in ("probe", "probe_f16"):
    pp = os.path.join(out, probe + ".json")
    if os.path.exists(pp):
        pr = json.load(open(pp))
        summary[probe] = {k: pr.get(k) for k in ("ok", "error", "dawn_flags", "adapter", "device_limits",
                                                   "device_features", "shader_f16_used")}
        print(probe + ":", json.dumps(summary[probe]))
ref16, refc = torch_ref.get("eager_fp16"), torch_ref.get("compile_fp16")
print(f"{'variant':40s} {'ms/step':>9s} {'loop ms':>8s} {'x eager16':>9s} {'x comp16':>9s} {'TFLOP/s':>8s} {'%peak':>6s} {'setup s':>8s}")
for label, ms, setup, flop, loop in rows:
    if ms is None:
        print(label); summary["rows"].append({"variant": label}); continue
    tf = (flop or 0) / (ms * 1e-3)   # flop is None for a toy-size run
    e = {"variant": label, "ms": ms, "tflops": tf / 1e12 if flop else None,
         "fraction_of_peak": tf / PEAK if flop else None,
         "ratio_to_torch_eager_fp16": ms / ref16 if ref16 else None,
         "ratio_to_torch_compile_fp16": ms / refc if refc else None, "setup_s": setup,
         "loop_ms": loop}
    if label in checks:
        e["rel_l2_vs_fp64"] = checks[label]["rel_l2"]
        e["check_passed"] = checks[label]["passed"]
    summary["rows"].append(e)
    fmt = lambda v: f"{v:9.2f}" if v else f"{'-':>9s}"
    print(f"{label:40s} {ms:9.2f} {(f'{loop:8.2f}' if loop else f'{chr(45):>8s}')} "
          f"{fmt(e['ratio_to_torch_eager_fp16'])} "
          f"{fmt(e['ratio_to_torch_compile_fp16'])} {tf / 1e12:8.1f} {100 * tf / PEAK:6.2f} "
          f"{(setup or 0):8.1f}" + (f"  rel-L2 {e['rel_l2_vs_fp64']:.1e}" if "rel_l2_vs_fp64" in e else ""))
tti = {}
for side in ("webgpu", "diffusers"):
    tp = os.path.join(out, f"tti_{side}.json")
    if os.path.exists(tp):
        t = json.load(open(tp))
        tti[side] = {k: t.get(k) for k in ("flavor", "dtype", "first_image_s", "steady_image_s",
                                            "load_s", "steps", "image_size")}
        print(f"time to image, {side}: first {t['first_image_s']:.2f} s, steady "
              f"{t['steady_image_s'] or float('nan'):.2f} s")
if tti:
    summary["time_to_image"] = tti
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
EOF
say "done"
