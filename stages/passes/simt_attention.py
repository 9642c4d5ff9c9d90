"""Self-attention for every WebGPU adapter: one query row an invocation, K and V staged in
workgroup memory, in plain WGSL.

With the convolutions and linear layers on the SIMT GEMM (stages/passes/simt.py), the UNet's
self-attention at 64x64 latents (4096 tokens, head_dim 40) on the TIR kernel (stages/passes/
attention_kernel.py) was a quarter of the float32 step (23 of 90 ms, 9 TFLOP/s:
bench/results/h200/session9_simt_im2col/). That kernel reads K and V one float at a time from
storage, a load per multiply-add. Here a workgroup serves `rows` query rows of one (batch,
head), one an invocation (its q, pre-scaled by scale * log2 e, and its output row in registers);
per step its invocations copy `kt` keys of K and V into workgroup memory as float32 vec4s, then
each invocation scores its row against them (vec4 dot products: every invocation reads the same
address, a broadcast), folds them into its running max and sum (online softmax, exp2) and adds
P V to its output. Taken: float32 or float16, no mask or bias, not causal, head_dim a multiple
of 4 up to MAX_HEAD, queries a multiple of `rows`, keys of `kt` (the 77-token cross-attention
stays on the TIR kernel).

Through the rewrite the attention passes share (stages/passes/attention_rewrite.py): a TIR
PrimFunc with the kernel's buffers and grid and a plain body, named after what it computes,
whose WGSL the build swaps in (stages/passes/wgsl_swap.py).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from stages.passes.attention_rewrite import Kernels, make_pass
from stages.passes.simt_gemm import DTYPE_OF, ENABLES, MAX_WORKGROUP_BYTES, WGSL_TYPE

ROWS = 64                 # query rows (invocations) per workgroup
MAX_HEAD = 80             # head_dim taken (registers: q and the output row, 2 x head_dim floats)
NAME = re.compile(r"simtattn_(f32|f16)_b(\d+)_q(\d+)_k(\d+)_h(\d+)_d(\d+)_s([0-9a-f]{8})_r(\d+)_t(\d+)")


@dataclass(frozen=True)
class SimtAttention:
    batch: int
    queries: int
    keys: int
    heads: int
    head_dim: int
    scale: float
    dtype: str = "float32"
    rows: int = ROWS          # query rows per workgroup, one an invocation
    kt: int = 32              # keys per step

    @property
    def threads(self) -> int:
        return self.rows

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.queries // self.rows, self.batch * self.heads, 1)

    @property
    def shared_bytes(self) -> int:
        return 2 * self.kt * self.head_dim * 4

    @property
    def flop(self) -> int:
        return 4 * self.batch * self.heads * self.queries * self.keys * self.head_dim

    def fits(self) -> bool:
        return (self.head_dim % 4 == 0 and self.head_dim <= MAX_HEAD
                and self.queries % self.rows == 0 and self.keys % self.kt == 0
                and self.rows <= 256 and self.shared_bytes <= MAX_WORKGROUP_BYTES)


def plan(batch: int, queries: int, keys: int, heads: int, head_dim: int, scale: float,
         dtype: str) -> SimtAttention | None:
    """32 keys a step where K's and V's tiles fit in 16 KiB (head_dim up to 64), else 16."""
    for kt in (32, 16):
        a = SimtAttention(batch, queries, keys, heads, head_dim, scale, dtype, ROWS, kt)
        if a.fits():
            return a
    return None


def kernel_name(a: SimtAttention) -> str:
    bits = struct.unpack("<I", struct.pack("<f", a.scale))[0]
    return (f"simtattn_{WGSL_TYPE[a.dtype]}_b{a.batch}_q{a.queries}_k{a.keys}_h{a.heads}"
            f"_d{a.head_dim}_s{bits:08x}_r{a.rows}_t{a.kt}")


def attention_from_name(name: str) -> SimtAttention | None:
    hit = NAME.search(name)
    if not hit:
        return None
    dt, b, q, k, h, d, s, rows, kt = hit.groups()
    scale = struct.unpack("<f", struct.pack("<I", int(s, 16)))[0]
    return SimtAttention(int(b), int(q), int(k), int(h), int(d), scale,
                         DTYPE_OF[dt], int(rows), int(kt))


def entry_point(a: SimtAttention, name: str, q: str, k: str, v: str, out: str) -> str:
    """The compute entry point over storage buffers q, k, v, out (BSHD, bound as vec4 arrays
    of the kernel's dtype)."""
    if not a.fits():
        raise ValueError(f"simt_attention: {a} does not fit")
    d4, kt, rows, h = a.head_dim // 4, a.kt, a.rows, a.heads
    ty = WGSL_TYPE[a.dtype]
    qscale = float(struct.unpack("<f", struct.pack("<f", a.scale * math.log2(math.e)))[0])
    cs = range(d4)
    out_lines = [
        f"var<workgroup> kt : array<vec4<f32>, {kt * d4}>;",
        f"var<workgroup> vt : array<vec4<f32>, {kt * d4}>;",
        "",
        f"@compute @workgroup_size({rows}, 1, 1)",
        f"fn {name}(@builtin(workgroup_id) wg : vec3<u32>,",
        "    @builtin(local_invocation_index) lid : u32) {",
        f"  let b = wg.y / {h}u;",
        f"  let hd = wg.y % {h}u;",
        f"  let row = wg.x * {rows}u + lid;",
        f"  let qb = ((b * {a.queries}u + row) * {h}u + hd) * {d4}u;",
        f"  let kb = b * {a.keys * h * d4}u + hd * {d4}u;",
    ]
    out_lines += [f"  let q{c} = vec4<f32>({q}[qb + {c}u]) * {qscale!r};" for c in cs]
    out_lines += [f"  var o{c} = vec4<f32>();" for c in cs]
    out_lines += ["  var mx = -3.0e38;", "  var l = 0.0;",
                  f"  for (var t = 0u; t < {a.keys // kt}u; t++) {{",
                  "    workgroupBarrier();",
                  f"    for (var i = lid; i < {kt * d4}u; i += {rows}u) {{",
                  f"      let g = kb + (t * {kt}u + i / {d4}u) * {h * d4}u + i % {d4}u;",
                  f"      kt[i] = vec4<f32>({k}[g]);",
                  f"      vt[i] = vec4<f32>({v}[g]);",
                  "    }",
                  "    workgroupBarrier();"]
    for j in range(kt):
        terms = " + ".join(f"dot(q{c}, kt[{j * d4 + c}u])" for c in cs)
        out_lines.append(f"    let s{j} = {terms};")
    top = "mx"
    for j in range(kt):
        top = f"max({top}, s{j})"
    out_lines += [f"    let mn = {top};",
                  "    let alpha = exp2(mx - mn);",
                  "    mx = mn;"]
    out_lines += [f"    let p{j} = exp2(s{j} - mn);" for j in range(kt)]
    out_lines.append("    l = l * alpha + " + " + ".join(f"p{j}" for j in range(kt)) + ";")
    for c in cs:
        out_lines.append(f"    o{c} = o{c} * alpha;")
        out_lines += [f"    o{c} = fma(vec4<f32>(p{j}), vt[{j * d4 + c}u], o{c});" for j in range(kt)]
    out_lines += ["  }", "  let inv = 1.0 / l;"]
    out_lines += [f"  {out}[qb + {c}u] = vec4<{ty}>(o{c} * inv);" for c in cs]
    out_lines.append("}")
    return "\n".join(out_lines) + "\n"


KERNELS = Kernels("websd.SimtAttention", ("float32", "float16"), plan, kernel_name, bias=False)


def make(target):
    """Rewrite each eligible R.nn.attention (see above) to the kernel; flash_attention, after
    this step, takes the rest."""
    return make_pass(KERNELS)


def wgsl_body(name: str, source: str) -> str | None:
    """The attention shader for a kernel this pass made (None for any other kernel)."""
    from stages.passes.wgsl_swap import rewrite

    a = attention_from_name(name)
    if a is None:
        return None
    vec = f"vec4<{WGSL_TYPE[a.dtype]}>"
    return rewrite(source, name, lambda fn, bufs: entry_point(a, fn, bufs["q"], bufs["k"],
                                                              bufs["v"], bufs["out"]),
                   ENABLES[a.dtype], (), {"q": vec, "k": vec, "v": vec, "out": vec})
