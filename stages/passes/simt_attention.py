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

Like the GEMMs: a TIR PrimFunc with the kernel's buffers and grid and a plain body, named
after what it computes, whose WGSL the build swaps in (stages/passes/wgsl_swap.py).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from stages.passes.simt_gemm import ENABLES, MAX_WORKGROUP_BYTES, WGSL_TYPE

ROWS = 64                 # query rows (invocations) per workgroup
MAX_HEAD = 80             # head_dim taken (registers: q and the output row, 2 x head_dim floats)
NAME = re.compile(r"simtattn_(f32|f16)_b(\d+)_q(\d+)_k(\d+)_h(\d+)_d(\d+)_s([0-9a-f]{8})_r(\d+)_t(\d+)")
SHORT = {"float32": "f32", "float16": "f16"}


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
    return (f"simtattn_{SHORT[a.dtype]}_b{a.batch}_q{a.queries}_k{a.keys}_h{a.heads}"
            f"_d{a.head_dim}_s{bits:08x}_r{a.rows}_t{a.kt}")


def attention_from_name(name: str) -> SimtAttention | None:
    hit = NAME.search(name)
    if not hit:
        return None
    dt, b, q, k, h, d, s, rows, kt = hit.groups()
    scale = struct.unpack("<f", struct.pack("<I", int(s, 16)))[0]
    return SimtAttention(int(b), int(q), int(k), int(h), int(d), scale,
                         "float32" if dt == "f32" else "float16", int(rows), int(kt))


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


def placeholder(a: SimtAttention):
    """The TIR kernel the WGSL replaces: buffers (q, k, v, out), grid and workgroup of the WGSL
    kernel, and a plain body (invocation r computes query row r in two passes over the keys)
    that computes the same where the swap does not happen."""
    from tvm.script import tirx as T

    b, sq, sk, h, d, rows, dtype = a.batch, a.queries, a.keys, a.heads, a.head_dim, a.rows, a.dtype
    gx, gy, _ = a.grid
    qscale = a.scale * math.log2(math.e)

    @T.prim_func(private=True, s_tir=True)
    def attn(q: T.Buffer((b, sq, h, d), dtype), k: T.Buffer((b, sk, h, d), dtype),
             v: T.Buffer((b, sk, h, d), dtype), out: T.Buffer((b, sq, h, d), dtype)):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
        for bx in T.thread_binding(gx, thread="blockIdx.x"):
            for by in T.thread_binding(gy, thread="blockIdx.y"):
                for tx in T.thread_binding(rows, thread="threadIdx.x"):
                    with T.sblock("attention"):
                        T.reads()
                        T.writes()
                        st = T.alloc_buffer((3,), "float32", scope="local")   # max, sum, score
                        acc = T.alloc_buffer((d,), "float32", scope="local")
                        st[0] = T.float32(-3.0e38)
                        st[1] = T.float32(0)
                        for c in T.serial(d):
                            acc[c] = T.float32(0)
                        for j in T.serial(sk):
                            st[2] = T.float32(0)
                            for c in T.serial(d):
                                st[2] = st[2] + T.cast(q[by // h, bx * rows + tx, by % h, c], "float32") * T.cast(k[by // h, j, by % h, c], "float32")
                            st[0] = T.max(st[0], st[2])
                        for j in T.serial(sk):
                            st[2] = T.float32(0)
                            for c in T.serial(d):
                                st[2] = st[2] + T.cast(q[by // h, bx * rows + tx, by % h, c], "float32") * T.cast(k[by // h, j, by % h, c], "float32")
                            st[2] = T.exp2((st[2] - st[0]) * T.float32(qscale))
                            st[1] = st[1] + st[2]
                            for c in T.serial(d):
                                acc[c] = acc[c] + st[2] * T.cast(v[by // h, j, by % h, c], "float32")
                        for c in T.serial(d):
                            out[by // h, bx * rows + tx, by % h, c] = T.cast(acc[c] / st[1], dtype)

    import tvm

    return tvm.script.from_source(attn.script())


def make(target):
    """Rewrite each eligible R.nn.attention (see above) to the kernel; flash_attention, after
    this step, takes the rest."""
    import tvm
    from tvm import relax

    from stages.passes.rewrite import call_pass

    def fresh():
        kernels: dict[SimtAttention, tvm.ir.GlobalVar] = {}

        def rewrite(m, call):
            if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.attention"
                    and len(call.args) == 3 and call.attrs.causal_mask is None):
                return None
            q, k, v = call.args
            dtype = str(q.ty.dtype)
            if dtype not in SHORT or any(str(t.ty.dtype) != dtype for t in (k, v)):
                return None
            (b, sq, h, d), (_, sk, _, dk), (_, _, _, dv) = (
                [int(x) for x in t.ty.shape] for t in (q, k, v))
            scale = call.attrs.scale
            scale = 1.0 / math.sqrt(d) if scale is None else float(scale.value)
            a = plan(b, sq, sk, h, d, scale, dtype)
            if a is None or not d == dk == dv:
                return None
            if a not in kernels:
                name = kernel_name(a)
                kernels[a] = m.builder_.add_func(
                    placeholder(a).with_attr("global_symbol", name), name)
            return relax.call_tir(kernels[a], [q, k, v], call.ty)

        return rewrite

    return call_pass("websd.SimtAttention", fresh)


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
