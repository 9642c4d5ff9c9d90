"""Attention for every WebGPU adapter: query rows in registers, K and V staged in workgroup
memory, in plain WGSL.

With the convolutions and linear layers on the SIMT GEMM (stages/passes/simt.py), the UNet's
self-attention at 64x64 latents (4096 tokens, head_dim 40) on the TIR kernel (stages/passes/
attention_kernel.py) was a quarter of the float32 step (23 of 90 ms, 9 TFLOP/s:
bench/results/h200/session9_simt_im2col/). That kernel reads K and V one float at a time from
storage, a load per multiply-add. Here a workgroup serves `rows` query rows of one (batch,
head), `per` an invocation (each row's q, pre-scaled by scale * log2 e, and its output in
registers); per step its invocations copy `kt` keys of K and V into workgroup memory as float32
vec4s, then each invocation scores its rows against them (vec4 dot products: every invocation
reads the same address, a broadcast, and each value read feeds all `per` rows), folds them into
each row's running max and sum (online softmax, exp2) and adds P V to its outputs. Keys that
do not fill a last step (the 77 of the cross-attention) get one shorter step of their own.
Taken: float32 or float16, no mask or bias, not causal, head_dim a multiple of 4 with
head_dim x per up to MAX_HEAD, queries a multiple of `rows` (CLIP's causal attention and the
160-wide heads stay on the TIR kernel).

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

ROWS = 64                 # query rows per workgroup
MAX_HEAD = 80             # head_dim x rows an invocation (registers: q and the output rows)
NAME = re.compile(r"simtattn_(f32|f16)_b(\d+)_q(\d+)_k(\d+)_h(\d+)_d(\d+)_s([0-9a-f]{8})"
                  r"_r(\d+)_t(\d+)(?:_i(\d+))?(?:_p(\d+))?(?:_f(\d))?")


@dataclass(frozen=True)
class SimtAttention:
    batch: int
    queries: int
    keys: int
    heads: int
    head_dim: int
    scale: float
    dtype: str = "float32"
    rows: int = ROWS          # query rows per workgroup
    kt: int = 32              # keys per step
    per: int = 1              # query rows an invocation (every K and V value it reads feeds all)
    parts: int = 1            # the keys split between this many invocations of each row
    prefetch: int = 0         # 1: the next step's K and V loaded into registers during this one

    @property
    def group(self) -> int:
        """Invocations that serve one part of the keys (each its `per` rows)."""
        return self.rows // self.per

    @property
    def threads(self) -> int:
        return self.group * self.parts

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.queries // self.rows, self.batch * self.heads, 1)

    @property
    def shared_vec4s(self) -> int:
        """K's and V's tiles of every part; at the end, the partial rows of parts 1.. (each its
        max and sum, then its output row) for part 0 to merge, in the same memory."""
        d4 = self.head_dim // 4
        return max(2 * self.parts * self.kt * d4, (self.parts - 1) * self.rows * (d4 + 1))

    @property
    def shared_bytes(self) -> int:
        return 16 * self.shared_vec4s

    @property
    def flop(self) -> int:
        return 4 * self.batch * self.heads * self.queries * self.keys * self.head_dim

    def fits(self) -> bool:
        split = self.parts == 1 or (self.keys % self.parts == 0
                                    and self.keys // self.parts % self.kt == 0)
        return (self.head_dim % 4 == 0 and self.head_dim * self.per <= MAX_HEAD
                and self.per in (1, 2) and self.rows % self.per == 0
                and self.parts in (1, 2, 4) and split and self.prefetch in (0, 1)
                and self.queries % self.rows == 0 and self.threads <= 256
                and self.shared_bytes <= MAX_WORKGROUP_BYTES)


# (rows a workgroup, keys a step, rows an invocation, prefetch) in order of preference, measured
# on the H200 (bench/results/h200/wgsl_kernels/run9_simt_attention2/, run10_simt_attention_
# prefetch/). Two rows an invocation (where head_dim x 2 fits the registers: the UNet's 40) and
# 256 rows a workgroup took the 4096-token self-attention from 2.03 to 1.30 ms in float32 (1.77
# -> 1.26 in float16: the matrix units' kernel takes 2.32); 16 keys a step with the next step's
# K and V loaded into registers during this one: 1.22 and 1.21. At head_dim 80 (one row an
# invocation), 128 rows a workgroup with the prefetch: 0.41 -> 0.36 ms. For the 77 keys of the
# cross-attention 128 rows and 16 keys a step did best (head_dim 40: 0.040 ms; 256 rows: 0.053).
# Splitting the keys between two invocations of a row (parts) did not beat these (1.47-1.59 ms).
# The last, 64 rows and 4 keys a step, is for query counts that 128 does not divide (the toy
# models' 64): a GPU runs such a kernel in microseconds at any tiling, but lavapipe (Mesa 25's
# LLVM JIT, what CI and the page's tests run WebGPU on) compiles a shader when it is first
# dispatched, in time that grows faster than the unrolled step: the trained model's VAE
# attention (head_dim 64) took 10 s at 4 keys a step, 28 s at 8, 110 s at 16 and about 20
# minutes at 32 (one dispatch of the kernel alone, in Dawn for Node on lavapipe).
SMALL = (64, 4, 1, 0)
LONG_KEYS = ((256, 16, 2, 1), (128, 16, 2, 1), (128, 16, 1, 1), SMALL)
SHORT_KEYS = ((128, 16, 2, 0), (256, 32, 2, 0), (128, 16, 1, 1), SMALL)
SHORT = 256               # keys up to this many are short


def plan(batch: int, queries: int, keys: int, heads: int, head_dim: int, scale: float,
         dtype: str) -> SimtAttention | None:
    """The first tiling (above) that fits."""
    for rows, kt, per, prefetch in SHORT_KEYS if keys <= SHORT else LONG_KEYS:
        a = SimtAttention(batch, queries, keys, heads, head_dim, scale, dtype, rows, kt, per, 1,
                          prefetch)
        if a.fits():
            return a
    return None


def kernel_name(a: SimtAttention) -> str:
    bits = struct.unpack("<I", struct.pack("<f", a.scale))[0]
    return (f"simtattn_{WGSL_TYPE[a.dtype]}_b{a.batch}_q{a.queries}_k{a.keys}_h{a.heads}"
            f"_d{a.head_dim}_s{bits:08x}_r{a.rows}_t{a.kt}_i{a.per}_p{a.parts}_f{a.prefetch}")


def attention_from_name(name: str) -> SimtAttention | None:
    hit = NAME.search(name)
    if not hit:
        return None
    dt, b, q, k, h, d, s, rows, kt, per, parts, prefetch = hit.groups()
    scale = struct.unpack("<f", struct.pack("<I", int(s, 16)))[0]
    return SimtAttention(int(b), int(q), int(k), int(h), int(d), scale, DTYPE_OF[dt], int(rows),
                         int(kt), int(per or 1), int(parts or 1), int(prefetch or 0))


def entry_point(a: SimtAttention, name: str, q: str, k: str, v: str, out: str) -> str:
    """The compute entry point over storage buffers q, k, v, out (BSHD, bound as vec4 arrays
    of the kernel's dtype). Invocation `lid` serves part lid / group of the keys for rows
    lid % group, + group, ... of its workgroup's block. The keys come in whole steps of `kt`,
    then (where kt does not divide them, as the 77 of the cross-attention) one step of the
    rest, unrolled for its length. With parts, the invocations of parts 1.. hand their rows'
    max, sum and output to part 0's through workgroup memory, which merges them (as flash
    attention merges blocks) and writes the output."""
    if not a.fits():
        raise ValueError(f"simt_attention: {a} does not fit")
    d4, kt, h, per, parts, group = a.head_dim // 4, a.kt, a.heads, a.per, a.parts, a.group
    ty = WGSL_TYPE[a.dtype]
    qscale = float(struct.unpack("<f", struct.pack("<f", a.scale * math.log2(math.e)))[0])
    cs, rs = range(d4), range(per)
    v0 = parts * kt * d4              # where V's tiles start in workgroup memory
    whole, rest = divmod(a.keys // parts, kt)
    kp = "kp + " if parts > 1 else ""

    def at(first: str, n: int) -> str:
        """Where element e of a step's tiles (keys first .. first + n - 1 of each part) is in
        K and V."""
        if parts > 1:
            return (f"kb + ({first} + e / {n * d4}u * {a.keys // parts}u + e % {n * d4}u / {d4}u)"
                    f" * {h * d4}u + e % {d4}u")
        return f"kb + ({first} + e / {d4}u) * {h * d4}u + e % {d4}u"

    def step(first: str, n: int) -> list[str]:
        """Keys first .. first + n - 1 of each part: stage them, score them, fold them in."""
        lines = ["    workgroupBarrier();",
                 f"    for (var e = lid; e < {parts * n * d4}u; e += {a.threads}u) {{",
                 f"      let g = {at(first, n)};",
                 f"      kv[e] = vec4<f32>({k}[g]);",
                 f"      kv[{v0}u + e] = vec4<f32>({v}[g]);",
                 "    }",
                 "    workgroupBarrier();"]
        return lines + fold(n)

    # with prefetch: each invocation's share of a whole step's tiles, in registers
    count = parts * kt * d4
    loads = -(-count // a.threads)

    def guarded(i: int, body: str) -> str:
        e = f"let e = lid + {i * a.threads}u;"
        return (f"    {{ {e} {body} }}" if (i + 1) * a.threads <= count
                else f"    {{ {e} if (e < {count}u) {{ {body} }} }}")

    def fetch(first: str) -> list[str]:
        return [guarded(i, f"let g = {at(first, kt)}; fk{i} = vec4<f32>({k}[g]); "
                           f"fv{i} = vec4<f32>({v}[g]);") for i in range(loads)]

    def prefetched_step() -> list[str]:
        lines = ["    workgroupBarrier();"]
        lines += [guarded(i, f"kv[e] = fk{i}; kv[{v0}u + e] = fv{i};") for i in range(loads)]
        lines += ["    workgroupBarrier();", f"    if (t + 1u < {whole}u) {{"]
        lines += ["  " + x for x in fetch(f"(t + 1u) * {kt}u")] + ["    }"]
        return lines + fold(kt)

    def fold(n: int) -> list[str]:
        """Score this step's n keys (in workgroup memory) and fold them into each row."""
        lines = []
        for j in range(n):
            lines += [f"    let s{r}_{j} = " + " + ".join(f"dot(q{r}_{c}, kv[{kp}{j * d4 + c}u])"
                                                         for c in cs) + ";" for r in rs]
        for r in rs:
            top = f"mx{r}"
            for j in range(n):
                top = f"max({top}, s{r}_{j})"
            lines += [f"    let mn{r} = {top};",
                      f"    let alpha{r} = exp2(mx{r} - mn{r});",
                      f"    mx{r} = mn{r};"]
            lines += [f"    let p{r}_{j} = exp2(s{r}_{j} - mn{r});" for j in range(n)]
            lines.append(f"    l{r} = l{r} * alpha{r} + " + " + ".join(f"p{r}_{j}" for j in range(n)) + ";")
        for c in cs:
            lines += [f"    o{r}_{c} = o{r}_{c} * alpha{r};" for r in rs]
            for j in range(n):
                lines += [f"    o{r}_{c} = fma(vec4<f32>(p{r}_{j}), kv[{kp}{v0 + j * d4 + c}u], o{r}_{c});"
                          for r in rs]
        return lines

    lines = [
        f"var<workgroup> kv : array<vec4<f32>, {a.shared_vec4s}>;",
        "",
        f"@compute @workgroup_size({a.threads}, 1, 1)",
        f"fn {name}(@builtin(workgroup_id) wg : vec3<u32>,",
        "    @builtin(local_invocation_index) lid : u32) {",
        f"  let b = wg.y / {h}u;",
        f"  let hd = wg.y % {h}u;",
        f"  let kb = b * {a.keys * h * d4}u + hd * {d4}u;",
    ]
    me = "lid"
    if parts > 1:
        lines += [f"  let part = lid / {group}u;", f"  let kp = part * {kt * d4}u;",
                  f"  let me = lid % {group}u;"]
        me = "me"
    for r in rs:
        lines += [f"  let qb{r} = ((b * {a.queries}u + wg.x * {a.rows}u + {me} + {r * group}u) * {h}u"
                  f" + hd) * {d4}u;"]
        lines += [f"  let q{r}_{c} = vec4<f32>({q}[qb{r} + {c}u]) * {qscale!r};" for c in cs]
        lines += [f"  var o{r}_{c} = vec4<f32>();" for c in cs]
        lines += [f"  var mx{r} = -3.0e38;", f"  var l{r} = 0.0;"]
    if whole and a.prefetch:
        lines += [f"  var fk{i} : vec4<f32>;\n  var fv{i} : vec4<f32>;" for i in range(loads)]
        lines += fetch("0u")
        lines += [f"  for (var t = 0u; t < {whole}u; t++) {{"] + prefetched_step() + ["  }"]
    elif whole:
        lines += [f"  for (var t = 0u; t < {whole}u; t++) {{"] + step(f"t * {kt}u", kt) + ["  }"]
    if rest:
        lines += ["  {"] + step(f"{whole * kt}u", rest) + ["  }"]
    if parts > 1:                     # parts 1.. hand over; part 0 merges
        def slot(other: str, r: int) -> str:   # where part other's row me + r * group goes
            return f"(({other} - 1u) * {a.rows}u + me + {r * group}u) * {d4 + 1}u"

        lines += ["  workgroupBarrier();", "  if (part > 0u) {"]
        for r in rs:
            lines += [f"    let at{r} = {slot('part', r)};",
                      f"    kv[at{r}] = vec4<f32>(mx{r}, l{r}, 0.0, 0.0);"]
            lines += [f"    kv[at{r} + {1 + c}u] = o{r}_{c};" for c in cs]
        lines += ["  }", "  workgroupBarrier();", "  if (part == 0u) {"]
        for other in range(1, parts):
            for r in rs:
                lines += [f"    {{ let at = {slot(f'{other}u', r)};",
                          "      let ml = kv[at];",
                          f"      let mn = max(mx{r}, ml.x);",
                          f"      let a0 = exp2(mx{r} - mn);",
                          "      let a1 = exp2(ml.x - mn);",
                          f"      mx{r} = mn;",
                          f"      l{r} = l{r} * a0 + ml.y * a1;"]
                lines += [f"      o{r}_{c} = o{r}_{c} * a0 + kv[at + {1 + c}u] * a1;" for c in cs]
                lines.append("    }")
    for r in rs:
        lines += [f"  let inv{r} = 1.0 / l{r};"]
        lines += [f"  {out}[qb{r} + {c}u] = vec4<{ty}>(o{r}_{c} * inv{r});" for c in cs]
    if parts > 1:
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


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
