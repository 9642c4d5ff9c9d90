"""Our subgroup-matrix WGSL with the matrix ops written out per invocation, for CPU adapters.

The -sm kernels (stages/passes/subgroup_matrix_gemm.py, subgroup_matrix_attention.py) need
`chromium-experimental-subgroup-matrix`, which no CPU adapter has, so CI could never run them.
`emulated(wgsl)` rewrites such a shader into plain WGSL (f16 + subgroups) with the same
indexing: each invocation holds a whole 16x16 matrix (a struct of 256 f32), loads and stores all
of it (every invocation of the subgroup writes the same values), and multiplies 16x16x16 itself.
The loops run to a bound read at run time (a storage buffer's length, capped at 16), or the
CPU driver's compiler would unroll every 16x16x16 product and take minutes per shader.
Slow, but it runs the kernel's own offsets, strides, loops and barriers under Dawn on
lavapipe, where WGSL's uniformity rules are checked too. lavapipe stalls for minutes on
kernels that hold many matrices at once (the attention, 4x4 GEMM tiles): those are only
validated here. What it cannot show: the matrix builtins' own validation and speed (the device
run does).
"""

from __future__ import annotations

import re

MATRIX = re.compile(r"subgroup_matrix_(?:left|right|result)<f(?:16|32), 16, 16>")
LOAD = re.compile(r"subgroupMatrixLoad<SM16, (row_major|col_major)>\(&(\w+), ")
STORE = re.compile(r"subgroupMatrixStore<(row_major|col_major)>\(&(\w+), ")
AT = {"row_major": "off + r * stride + c", "col_major": "off + c * stride + r"}


def _helpers(n: str, loads, stores, types) -> list[str]:
    out = ["struct SM16 { v : array<f32, 256> }\n",
           "fn sm_mma(a : SM16, b : SM16, acc : SM16) -> SM16 {\n"
           f"  var m = acc;\n  let n = {n};\n"
           "  for (var i = 0u; i < n; i++) { for (var j = 0u; j < n; j++) {\n"
           "    var s = m.v[i * 16u + j];\n"
           "    for (var k = 0u; k < n; k++) { s += a.v[i * 16u + k] * b.v[k * 16u + j]; }\n"
           "    m.v[i * 16u + j] = s;\n  } }\n  return m;\n}\n"]
    for buf, major in loads:
        out.append(f"fn sm_load_{buf}_{major}(off : u32, stride : u32) -> SM16 {{\n"
                   f"  var m : SM16;\n  let n = {n};\n"
                   "  for (var r = 0u; r < n; r++) { for (var c = 0u; c < n; c++) {\n"
                   f"    m.v[r * 16u + c] = f32({buf}[{AT[major]}]);\n  }} }}\n  return m;\n}}\n")
    for buf, major in stores:
        out.append(f"fn sm_store_{buf}_{major}(off : u32, m : SM16, stride : u32) {{\n"
                   f"  let n = {n};\n"
                   "  for (var r = 0u; r < n; r++) { for (var c = 0u; c < n; c++) {\n"
                   f"    {buf}[{AT[major]}] = {types[buf]}(m.v[r * 16u + c]);\n  }} }}\n}}\n")
    return out


def emulated(wgsl: str) -> str:
    """The shader with its subgroup matrices emulated (see the module's docstring)."""
    types = dict(re.findall(r"var<[\w, ]+> (\w+) : array<(f16|f32)", wgsl))
    storage = re.search(r"var<storage, [\w]+> (\w+) : array<", wgsl).group(1)
    n = f"min(arrayLength(&{storage}), 16u)"
    body = MATRIX.sub("SM16", wgsl)
    loads = sorted(set((b, m) for m, b in LOAD.findall(body)))
    stores = sorted(set((b, m) for m, b in STORE.findall(body)))
    body = LOAD.sub(lambda h: f"sm_load_{h.group(2)}_{h.group(1)}(", body)
    body = STORE.sub(lambda h: f"sm_store_{h.group(2)}_{h.group(1)}(", body)
    body = body.replace("subgroupMatrixMultiplyAccumulate(", "sm_mma(")
    body = "\n".join(ln for ln in body.splitlines()
                     if "chromium_experimental_subgroup_matrix" not in ln
                     and "chromium.subgroup_matrix_uniformity" not in ln)
    head, sep, rest = body.partition("\n@compute")
    return head + "\n" + "".join(_helpers(n, loads, stores, types)) + sep + rest
