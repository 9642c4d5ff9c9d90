"""Attention on the matrix units (the -sm variants): K and V staged through workgroup memory for
several subgroups, each row's max over all keys first, then P V accumulated in subgroup matrices.

softmax(q k^T * scale) v, float16 in and out, float32 scores, sums and accumulators. A
workgroup of `subgroups` subgroups serves 16 x `tiles` query rows each, of one (batch, head).
Both passes go over the keys `kt` a step: the workgroup copies the step's keys into workgroup
memory (zero-padded to the 16-wide tiles; with `prefetch`, the next step's loads from storage
are issued before this step's products and stored once every subgroup is done with this one),
and each subgroup computes S = Q K^T for its rows in subgroup matrices (Q's tiles held for the
whole kernel) and stores S (float32) into its share of workgroup memory, where one invocation
per row reads its row in an order rotated by the row (no bank conflicts). Then
  1. (K alone staged) that invocation keeps the row's max m;
  2. (K and V) it writes P = exp2(S * scale * log2 e - m) as float16 (P <= 1) and adds up the
     row's sum, and the subgroup adds P V into result matrices that stay in the matrix units
     until the end: no rescaling. O / sum goes out through workgroup memory.
Computing S twice costs half again the matrix work of one pass, and is still faster than either
one-pass form tried (bench/results/h200/wgsl_kernels/run12_flash_two_pass/): with an online
softmax the output has to be rescaled as a row's max grows, and result matrices are opaque to
invocations. Folding each step's P V into output registers through workgroup memory took 0.97
ms at 4096 tokens (head_dim 40) against 0.66 here; keeping O in the accumulators and rescaling
it through workgroup memory only where a row's max grew was faster still but wrong on the H200,
though right under the CPU emulation (run11_flash_attention/lazy_rescale_wrong/). Keys that do
not fill a last step (the 77-token cross-attention) are masked in the softmax.

Taken: float16, no mask or bias, not causal, head_dim a multiple of 8 up to MAX_HEAD (the
UNet's 40, 80 and 160), queries a multiple of the workgroup's rows, any number of keys.

Like the GEMM (stages/passes/subgroup_matrix.py): a TIR PrimFunc with the kernel's buffers and
grid and a plain body, named after what it computes, whose WGSL the build swaps in
(stages/passes/wgsl_swap.py).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from stages.engine.config import WORKGROUP_STORAGE
from stages.passes import simt_attention
from stages.passes.attention_rewrite import Kernels, make_pass
from stages.passes.subgroup_matrix_gemm import DIRECTIVES, ENABLES, PAD, SUBGROUP, TILE

MAX_HEAD = 160
S_PAD = 4                 # floats past each row of S in workgroup memory
# (subgroups, row tiles, keys a step, prefetch), measured on the H200 on every attention of the
# UNet step (bench/results/h200/wgsl_kernels/run12_flash_two_pass/), per call: 4096 tokens at
# head_dim 40 0.66 ms (the SIMT kernel 1.21, the kernel before this one 2.32, PyTorch 0.16);
# 1024 at 80 0.081 (0.36, 0.25); 256 at 160 0.032 (the TIR kernel 0.18); the 77-key
# cross-attention at 40, 80 and 160 0.033, 0.016 and 0.021 (SIMT: 0.040, 0.034; TIR 0.074).
# Four subgroups a workgroup and 16 keys a step did best everywhere.
TILINGS = {40: (4, 2, 16, 1), 80: (4, 2, 16, 1), 160: (4, 1, 16, 1)}
SHORT_KEYS = (4, 1, 16, 1)     # keys up to simt_attention.SHORT (the cross-attention)
FALLBACK = ((4, 2, 16, 1), (4, 1, 16, 1), (2, 1, 16, 1), (1, 1, 16, 1), (1, 1, 16, 0))
NAME = re.compile(r"smattn_b(\d+)_q(\d+)_k(\d+)_h(\d+)_d(\d+)_s([0-9a-f]{8})"
                  r"_w(\d)_r(\d)_t(\d+)_f(\d)")


@dataclass(frozen=True)
class Attention:
    batch: int
    queries: int
    keys: int
    heads: int
    head_dim: int
    scale: float
    subgroups: int = 4        # subgroups a workgroup (they share each step's K and V)
    tiles: int = 2            # row tiles of 16 a subgroup serves: 1 or 2
    kt: int = 16              # keys a step, a multiple of 16
    prefetch: int = 1         # 1: the next step's loads from storage issued before this step's work

    dtype = "float16"

    @property
    def padded(self) -> int:
        return -(-self.head_dim // TILE) * TILE

    @property
    def rows(self) -> int:
        """Query rows a workgroup serves."""
        return TILE * self.tiles * self.subgroups

    @property
    def threads(self) -> int:
        return SUBGROUP * self.subgroups

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.queries // self.rows, self.batch * self.heads, 1)

    @property
    def steps(self) -> int:
        return -(-self.keys // self.kt)

    @property
    def layout(self) -> tuple[int, int, int]:
        """Row strides in workgroup memory: K's and V's rows (halves), S's (floats), P's (halves)."""
        return self.padded + PAD, self.kt + S_PAD, self.kt + PAD

    @property
    def staged_vec4s(self) -> int:
        """vec4s of K and V a step copies (head_dim / 4 a key)."""
        return 2 * self.kt * self.head_dim // 4

    @property
    def shared_bytes(self) -> int:
        ldk, lds, ldp = self.layout
        return 2 * (2 * self.kt * ldk) + 4 * self.rows * lds + 2 * self.rows * ldp + 4 * self.rows

    @property
    def flop(self) -> int:
        return 4 * self.batch * self.heads * self.queries * self.keys * self.head_dim

    def fits(self) -> bool:
        return (self.tiles in (1, 2) and self.subgroups in (1, 2, 4, 8) and self.kt % TILE == 0
                and self.prefetch in (0, 1) and self.queries % self.rows == 0
                and self.head_dim % 8 == 0 and self.head_dim <= MAX_HEAD
                and self.shared_bytes <= WORKGROUP_STORAGE["subgroup-matrix"])


def kernel_name(a: Attention) -> str:
    bits = struct.unpack("<I", struct.pack("<f", a.scale))[0]
    return (f"smattn_b{a.batch}_q{a.queries}_k{a.keys}_h{a.heads}_d{a.head_dim}_s{bits:08x}"
            f"_w{a.subgroups}_r{a.tiles}_t{a.kt}_f{a.prefetch}")


def attention_from_name(name: str) -> Attention | None:
    hit = NAME.search(name)
    if not hit:
        return None
    b, q, k, h, d, s, w, r, t, f = hit.groups()
    scale = struct.unpack("<f", struct.pack("<I", int(s, 16)))[0]
    return Attention(int(b), int(q), int(k), int(h), int(d), scale, int(w), int(r), int(t), int(f))


def entry_point(a: Attention, name: str, q: str, k: str, v: str, out: str) -> str:
    """The compute entry point over storage buffers q, out (array<f16>) and k, v (array<vec4<f16>>),
    BSHD.

    Q's tiles are loaded once straight from storage: their columns past head_dim hold the next
    head's values (or, for the last head of the last token, whatever robust access returns),
    which meet the zero columns of the staged K."""
    if not a.fits():
        raise ValueError(f"subgroup_matrix_attention: {a} does not fit")
    d, dp, h, sk, sq = a.head_dim, a.padded, a.heads, a.keys, a.queries
    row = h * d                          # halves between two tokens of a tensor
    qscale = float(struct.unpack("<f", struct.pack("<f", a.scale * math.log2(math.e)))[0])
    left = f"subgroup_matrix_left<f16, {TILE}, {TILE}>"
    right = f"subgroup_matrix_right<f16, {TILE}, {TILE}>"
    result = f"subgroup_matrix_result<f32, {TILE}, {TILE}>"
    ldk, lds, ldp = a.layout
    rt, dt, kt, w = a.tiles, a.padded // TILE, a.kt // TILE, a.subgroups
    rr = TILE * rt                       # query rows a subgroup serves
    stage = 2 * a.kt * ldk               # halves of one stage: K's rows, then V's
    nv = a.staged_vec4s
    per = -(-nv // a.threads)            # vec4s each invocation copies a step
    d4 = d // 4
    ragged = sk % a.kt != 0

    def fetch(kc: str, nv: int = nv) -> list[str]:
        """Loads of a step's K and V (keys from kc; only K where nv says so) into registers x0.."""
        out_ = []
        for u in range(-(-nv // a.threads)):
            e = f"lid + {u * a.threads}u"
            out_ += [f"    {{ let e = {e};",
                     f"      let kv = e / {a.kt * d4}u;   // 0: K, 1: V",
                     f"      let j = e / {d4}u % {a.kt}u;",
                     f"      let at = kbase + ({kc} + j) * {row // 4}u + e % {d4}u;"]
            keep = [f"e < {nv}u"] if nv % a.threads and u == nv // a.threads else []
            if ragged:
                keep.append(f"{kc} + j < {sk}u")
            cond = " && ".join(keep) or "true"
            out_ += [f"      x{u} = vec4<f16>();",
                     f"      if ({cond}) {{ if (kv == 0u) {{ x{u} = {k}[at]; }} else {{ x{u} = {v}[at]; }} }} }}"]
        return out_

    def put(nv: int = nv) -> list[str]:
        """Stores of the registers x0.. into websd_kv."""
        out_ = []
        for u in range(-(-nv // a.threads)):
            e = f"lid + {u * a.threads}u"
            guard = f"if ({e} < {nv}u) " if nv % a.threads and u == nv // a.threads else ""
            out_ += [f"    {guard}{{ let e = {e};",
                     f"      let o = e / {a.kt * d4}u * {a.kt * ldk}u"
                     f" + e / {d4}u % {a.kt}u * {ldk}u + e % {d4}u * 4u;",
                     f"      websd_kv[o] = x{u}.x; websd_kv[o + 1u] = x{u}.y;"
                     f" websd_kv[o + 2u] = x{u}.z; websd_kv[o + 3u] = x{u}.w; }}"]
        return out_

    def col(c: int) -> str:              # this invocation's c-th score column, rotated
        return f"({c}u + r) % {a.kt}u"

    lines = [
        f"var<workgroup> websd_kv : array<f16, {stage}>;   // (K, V) x keys x head",
        f"var<workgroup> websd_s : array<f32, {w * rr * lds}>;   // S: a subgroup's rows each",
        f"var<workgroup> websd_p : array<f16, {w * rr * ldp}>;   // P",
        f"var<workgroup> websd_a : array<f32, {w * rr}>;   // each row's 1 / sum",
        "",
        f"@compute @workgroup_size({a.threads}, 1, 1)",
        f"fn {name}(@builtin(workgroup_id) wg : vec3<u32>,",
        "    @builtin(local_invocation_index) lid : u32) {",
        f"  let sg = lid / {SUBGROUP}u;",
        f"  let lane = lid % {SUBGROUP}u;",
        f"  let r = lane % {rr}u;      // the query row whose softmax this invocation runs (part 0)",
        f"  let part = lane / {rr}u;",
        f"  let q0 = wg.x * {a.rows}u + sg * {rr}u;",
        f"  let bb = wg.y / {h}u;",
        f"  let hh = wg.y % {h}u;",
        f"  let kbase = bb * {sk * row // 4}u + hh * {d4}u;",
        f"  let sbase = sg * {rr * lds}u;",
        f"  let pbase = sg * {rr * ldp}u;",
        f"  let abase = sg * {rr}u;",
    ]
    lines += [f"  var x{u} : vec4<f16>;" for u in range(per)]
    if dp > d:   # the pad columns of K and V: zero for good
        lines += [f"  for (var i = lid; i < {2 * a.kt * (dp - d)}u; i += {a.threads}u) {{",
                  f"    websd_kv[i / {dp - d}u * {ldk}u + {d}u + i % {dp - d}u] = f16(0);",
                  "  }"]
    lines += [f"  let ql{i}_{t} = subgroupMatrixLoad<{left}, row_major>(&{q}, "
              f"(bb * {sq}u + q0 + {i * TILE}u) * {row}u + hh * {d}u + {t * TILE}u, {row}u);"
              for i in range(rt) for t in range(dt)]

    def scores(indent: str) -> list[str]:
        """S = Q K^T for this subgroup's rows, into its share of websd_s."""
        out_ = []
        for j in range(kt):
            out_ += [f"{indent}let k{j}_{t} = subgroupMatrixLoad<{right}, col_major>(&websd_kv, "
                     f"{j * TILE * ldk + t * TILE}u, {ldk}u);" for t in range(dt)]
            for i in range(rt):
                out_.append(f"{indent}var s{i}_{j} = {result}();")
                out_ += [f"{indent}s{i}_{j} = subgroupMatrixMultiplyAccumulate(ql{i}_{t}, k{j}_{t}, s{i}_{j});"
                         for t in range(dt)]
                out_.append(f"{indent}subgroupMatrixStore<row_major>(&websd_s, sbase + "
                            f"{i * TILE * lds + j * TILE}u, s{i}_{j}, {lds}u);")
        return out_

    def row_scores() -> list[str]:
        """This row's scores of the step (log2 units; masked keys -3e38) in s0.."""
        out_ = []
        for c in range(a.kt):
            at = f"websd_s[sbase + r * {lds}u + {col(c)}]"
            if ragged:
                out_ += [f"      var s{c} = -3.0e38;",
                         f"      if (kc + {col(c)} < {sk}u) {{ s{c} = {at} * {qscale!r}; }}"]
            else:
                out_.append(f"      let s{c} = {at} * {qscale!r};")
        return out_

    def two_passes() -> list[str]:
        """The rows' max over all keys (K alone staged), then P with it and O += P V."""
        nk = a.kt * d4                   # vec4s of K a step
        lines = ["  var m = -3.0e38;   // the row's max (log2 units)", "  var l = 0.0;"]
        for pass_ in (1, 2):
            n_ = nk if pass_ == 1 else nv
            if a.prefetch:
                lines += fetch("0u", n_) + put(n_)
            lines += [f"  for (var step = 0u; step < {a.steps}u; step++) {{",
                      f"    let kc = step * {a.kt}u;"]
            if not a.prefetch:
                lines += fetch("kc", n_) + put(n_)
            lines += ["    workgroupBarrier();"]
            if a.prefetch:
                lines += [f"    if (step + 1u < {a.steps}u) {{"] + fetch(f"kc + {a.kt}u", n_) + ["    }"]
            lines += scores("    ") + ["    workgroupBarrier();", "    if (part == 0u) {"]
            lines += row_scores()
            if pass_ == 1:
                lines += [f"      m = max(m, s{c});" for c in range(a.kt)]
                lines += ["    }"]
            else:
                for c in range(a.kt):
                    lines += [f"      let p{c} = f16(exp2(s{c} - m));",
                              f"      l += f32(p{c});",
                              f"      websd_p[pbase + r * {ldp}u + {col(c)}] = p{c};"]
                lines += ["    }", "    workgroupBarrier();"]
                for j in range(kt):
                    lines += [f"    let p{i}_{j} = subgroupMatrixLoad<{left}, row_major>(&websd_p, "
                              f"pbase + {i * TILE * ldp + j * TILE}u, {ldp}u);" for i in range(rt)]
                    for t in range(dt):
                        lines.append(f"    let v{j}_{t} = subgroupMatrixLoad<{right}, row_major>(&websd_kv, "
                                     f"{a.kt * ldk + j * TILE * ldk + t * TILE}u, {ldk}u);")
                        lines += [f"    o{i}_{t} = subgroupMatrixMultiplyAccumulate(p{i}_{j}, v{j}_{t}, o{i}_{t});"
                                  for i in range(rt)]
            # the stage is free once every subgroup is past this step's reads of it
            lines.append("    workgroupBarrier();")
            if a.prefetch:
                lines += [f"    if (step + 1u < {a.steps}u) {{"] + put(n_) + ["    }"]
            lines.append("  }")
            if pass_ == 1:
                lines += [f"  var o{i}_{t} = {result}();" for i in range(rt) for t in range(dt)]
        # O / sum, a 16x16 tile at a time through this subgroup's share of websd_s
        lines += ["  if (part == 0u) { websd_a[abase + r] = 1.0 / l; }"]
        for i in range(rt):
            for t in range(dt):
                lines += ["  workgroupBarrier();",
                          f"  subgroupMatrixStore<row_major>(&websd_s, sbase, o{i}_{t}, {TILE}u);",
                          "  workgroupBarrier();",
                          f"  for (var e = lane; e < {TILE * TILE}u; e += {SUBGROUP}u) {{",
                          f"    let c = {t * TILE}u + e % {TILE}u;",
                          f"    if (c < {d}u) {{",
                          f"      {out}[(bb * {sq}u + q0 + {i * TILE}u + e / {TILE}u) * {row}u + hh * {d}u + c] = "
                          f"f16(websd_s[sbase + e] * websd_a[abase + {i * TILE}u + e / {TILE}u]);",
                          "    }",
                          "  }"]
        return lines

    lines += two_passes()
    lines.append("}")
    return "\n".join(lines) + "\n"


def wgsl_body(name: str, source: str) -> str | None:
    from stages.passes.wgsl_swap import rewrite

    a = attention_from_name(name)
    if a is None:
        return None
    return rewrite(source, name, lambda fn, bufs: entry_point(a, fn, bufs["q"], bufs["k"],
                                                              bufs["v"], bufs["out"]),
                   ENABLES, DIRECTIVES, {"k": "vec4<f16>", "v": "vec4<f16>"})


def plan(batch: int, queries: int, keys: int, heads: int, head_dim: int, scale: float,
         dtype: str) -> Attention | None:
    """The measured tiling (above), else the first of FALLBACK that fits; None where none fits."""
    best = SHORT_KEYS if keys <= simt_attention.SHORT else TILINGS.get(head_dim)
    for w, r, kt, f in ((best,) if best else ()) + FALLBACK:
        a = Attention(batch, queries, keys, heads, head_dim, scale, w, r, kt, f)
        if a.fits():
            return a
    return None


KERNELS = Kernels("websd.SubgroupMatrixAttention", ("float16",), plan, kernel_name, bias=True)


def make(target):
    """Rewrite each eligible R.nn.attention (see above) to the kernel; simt_attention and
    flash_attention, after this step, take the rest."""
    return make_pass(KERNELS)
