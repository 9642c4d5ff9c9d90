"""Flash attention on the matrix units (the -sm variants): one pass over the keys, K and V staged
through workgroup memory for several subgroups, the output accumulated by invocations.

softmax(q k^T * scale) v, float16 in and out, float32 scores and sums. A workgroup of
`subgroups` subgroups serves 16 x `tiles` query rows each, of one (batch, head); per step the
workgroup copies `kt` keys of K and V into workgroup memory (zero-padded to the 16-wide tiles;
with `prefetch`, the next step's loads from storage are issued before this step's products and
stored when the subgroups are done with this step's), and each subgroup
  1. computes S = Q K^T for its rows in subgroup matrices (Q's tiles held for the whole pass)
     and stores S (float32) into its share of workgroup memory;
  2. runs the online softmax on one invocation per query row: m' = max(m, the step's max),
     P = exp2(S * scale * log2 e - m') as float16, the row's sum l = l * 2^(m - m') + sum(P);
  3. computes this step's P V in fresh subgroup matrices and stores it over S; the invocations
     that own a row (one, or two for 16 rows a subgroup: each half its columns) fold it into
     their float32 output registers: o = o * 2^(m - m') + (P V)[row].
The output stays out of the matrix units' accumulators across steps because they are opaque:
rescaling one means a round trip through workgroup memory, and on the H200 a kernel that did
so where a row's max grew (a result matrix reassigned under a branch, or loaded back from
workgroup memory) computed wrong results that the CPU emulation did not show (bench/results/
h200/wgsl_kernels/run11_flash_attention/). Keys that do not fill a last step (the 77-token
cross-attention) are masked in the softmax.

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

from stages.passes import simt_attention
from stages.passes.attention_rewrite import Kernels, make_pass
from stages.passes.subgroup_matrix_gemm import DIRECTIVES, ENABLES, PAD, SUBGROUP, TILE

MAX_HEAD = 160
WORKGROUP_BYTES = 32768   # what the -sm flavor asks of the adapter (config.WORKGROUP_STORAGE)
S_PAD = 4                 # floats past each row of S and of P V in workgroup memory
# (subgroups, row tiles, keys a step, prefetch) by head_dim, measured on the H200 on every
# attention of the UNet step (bench/results/h200/wgsl_kernels/run11_flash_attention/): 4096
# tokens at head_dim 40: 0.97 ms a call (the SIMT kernel 1.21, the two-pass matrix kernel this
# replaced 2.32); 1024 at 80: 0.14 (0.36, 0.25); 256 at 160: 0.044 (the TIR kernel: 0.18).
TILINGS = {40: (1, 2, 16, 1), 80: (4, 1, 16, 1), 160: (1, 1, 16, 1)}
FALLBACK = ((1, 2, 16, 1), (4, 1, 16, 1), (2, 1, 16, 1), (1, 1, 16, 1), (1, 1, 16, 0))
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
    def parts(self) -> int:
        """Invocations that share a query row's output (each its share of the columns)."""
        return SUBGROUP // (TILE * self.tiles)

    @property
    def layout(self) -> tuple[int, int, int]:
        """Row strides in workgroup memory: K's and V's rows (halves), S's and P V's (floats, in
        the same memory), P's (halves)."""
        return self.padded + PAD, max(self.kt, self.padded) + S_PAD, self.kt + PAD

    @property
    def staged_vec4s(self) -> int:
        """vec4s of K and V a step copies (head_dim / 4 a key)."""
        return 2 * self.kt * self.head_dim // 4

    @property
    def shared_bytes(self) -> int:
        ldk, lds, ldp = self.layout
        rows = TILE * self.tiles * self.subgroups
        return 2 * (2 * self.kt * ldk) + 4 * rows * lds + 2 * rows * ldp + 4 * rows

    @property
    def flop(self) -> int:
        return 4 * self.batch * self.heads * self.queries * self.keys * self.head_dim

    def fits(self) -> bool:
        return (self.tiles in (1, 2) and self.subgroups in (1, 2, 4, 8) and self.kt % TILE == 0
                and self.prefetch in (0, 1) and self.queries % self.rows == 0
                and self.head_dim % 8 == 0 and self.head_dim <= MAX_HEAD
                and self.shared_bytes <= WORKGROUP_BYTES)


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
    which meet the zero columns of the staged K. Each row's invocation reads its row of S in an
    order rotated by the row, so that the 32 invocations of a subgroup hit 32 banks."""
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
    cols = d // a.parts                  # output columns an invocation accumulates
    stage = 2 * a.kt * ldk               # halves of one stage: K's rows, then V's
    nv = a.staged_vec4s
    per = -(-nv // a.threads)            # vec4s each invocation copies a step
    d4 = d // 4
    ragged = sk % a.kt != 0

    def fetch(kc: str) -> list[str]:
        """Loads of a step's K and V (keys from kc) into registers x0.."""
        out_ = []
        for u in range(per):
            e = f"lid + {u * a.threads}u"
            out_ += [f"    {{ let e = {e};",
                     f"      let kv = e / {a.kt * d4}u;   // 0: K, 1: V",
                     f"      let j = e / {d4}u % {a.kt}u;",
                     f"      let at = kbase + ({kc} + j) * {row // 4}u + e % {d4}u;"]
            keep = [f"e < {nv}u"] if nv % a.threads and u == per - 1 else []
            if ragged:
                keep.append(f"{kc} + j < {sk}u")
            cond = " && ".join(keep) or "true"
            out_ += [f"      x{u} = vec4<f16>();",
                     f"      if ({cond}) {{ if (kv == 0u) {{ x{u} = {k}[at]; }} else {{ x{u} = {v}[at]; }} }} }}"]
        return out_

    def put() -> list[str]:
        """Stores of the registers x0.. into websd_kv."""
        out_ = []
        for u in range(per):
            e = f"lid + {u * a.threads}u"
            guard = f"if ({e} < {nv}u) " if nv % a.threads and u == per - 1 else ""
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
        f"var<workgroup> websd_s : array<f32, {w * rr * lds}>;   // S, then P V: a subgroup's rows each",
        f"var<workgroup> websd_p : array<f16, {w * rr * ldp}>;   // P",
        f"var<workgroup> websd_a : array<f32, {w * rr}>;   // each row's 2^(m - m'), then 1 / sum",
        "",
        f"@compute @workgroup_size({a.threads}, 1, 1)",
        f"fn {name}(@builtin(workgroup_id) wg : vec3<u32>,",
        "    @builtin(local_invocation_index) lid : u32) {",
        f"  let sg = lid / {SUBGROUP}u;",
        f"  let lane = lid % {SUBGROUP}u;",
        f"  let r = lane % {rr}u;      // the query row this invocation owns (with `part` of its columns)",
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
    lines += [f"  var o{c} = 0.0;" for c in range(cols)]
    lines += ["  var m = -3.0e38;   // the row's max so far (log2 units)", "  var l = 0.0;",
              "  var alpha = 0.0;"]
    if a.prefetch:
        lines += fetch("0u") + put()
    lines += [f"  for (var step = 0u; step < {a.steps}u; step++) {{",
              f"    let kc = step * {a.kt}u;"]
    if not a.prefetch:
        lines += fetch("kc") + put()
    lines += ["    workgroupBarrier();"]
    if a.prefetch:
        lines += [f"    if (step + 1u < {a.steps}u) {{"] + fetch(f"kc + {a.kt}u") + ["    }"]
    # 1. S = Q K^T
    for j in range(kt):
        lines += [f"    let k{j}_{t} = subgroupMatrixLoad<{right}, col_major>(&websd_kv, "
                  f"{j * TILE * ldk + t * TILE}u, {ldk}u);" for t in range(dt)]
        for i in range(rt):
            lines.append(f"    var s{i}_{j} = {result}();")
            lines += [f"    s{i}_{j} = subgroupMatrixMultiplyAccumulate(ql{i}_{t}, k{j}_{t}, s{i}_{j});"
                      for t in range(dt)]
            lines.append(f"    subgroupMatrixStore<row_major>(&websd_s, sbase + {i * TILE * lds + j * TILE}u, "
                         f"s{i}_{j}, {lds}u);")
    lines += ["    workgroupBarrier();"]
    # 2. the online softmax, an invocation per row
    lines += [f"    if (part == 0u) {{", "      var mb = m;"]
    for c in range(a.kt):               # unrolled: the row's scores stay in registers
        at = f"websd_s[sbase + r * {lds}u + {col(c)}]"
        if ragged:
            lines += [f"      var s{c} = -3.0e38;",
                      f"      if (kc + {col(c)} < {sk}u) {{ s{c} = {at} * {qscale!r}; }}"]
        else:
            lines.append(f"      let s{c} = {at} * {qscale!r};")
        lines.append(f"      mb = max(mb, s{c});")
    lines += ["      alpha = exp2(m - mb);", "      m = mb;", "      l *= alpha;"]
    for c in range(a.kt):
        lines += [f"      let p{c} = f16(exp2(s{c} - m));",
                  f"      l += f32(p{c});",
                  f"      websd_p[pbase + r * {ldp}u + {col(c)}] = p{c};"]
    if a.parts > 1:
        lines.append("      websd_a[abase + r] = alpha;")
    lines += ["    }", "    workgroupBarrier();"]
    if a.parts > 1:
        lines.append("    if (part != 0u) { alpha = websd_a[abase + r]; }")
    # 3. this step's P V, over S, into the rows' registers
    lines += [f"    var pv{i}_{t} = {result}();" for i in range(rt) for t in range(dt)]
    for j in range(kt):
        lines += [f"    let p{i}_{j} = subgroupMatrixLoad<{left}, row_major>(&websd_p, "
                  f"pbase + {i * TILE * ldp + j * TILE}u, {ldp}u);" for i in range(rt)]
        for t in range(dt):
            lines.append(f"    let v{j}_{t} = subgroupMatrixLoad<{right}, row_major>(&websd_kv, "
                         f"{a.kt * ldk + j * TILE * ldk + t * TILE}u, {ldk}u);")
            lines += [f"    pv{i}_{t} = subgroupMatrixMultiplyAccumulate(p{i}_{j}, v{j}_{t}, pv{i}_{t});"
                      for i in range(rt)]
    lines += [f"    subgroupMatrixStore<row_major>(&websd_s, sbase + {i * TILE * lds + t * TILE}u, "
              f"pv{i}_{t}, {lds}u);" for i in range(rt) for t in range(dt)]
    lines += ["    workgroupBarrier();",
              f"    let at = sbase + r * {lds}u + part * {cols}u;"]
    lines += [f"    o{c} = o{c} * alpha + websd_s[at + {c}u];" for c in range(cols)]
    if a.prefetch:
        lines += [f"    if (step + 1u < {a.steps}u) {{"] + put() + ["    }"]
    lines += ["  }"]
    # O / sum, each invocation its row's columns
    if a.parts > 1:
        lines += ["  if (part == 0u) { websd_a[abase + r] = l; }", "  workgroupBarrier();",
                  "  l = websd_a[abase + r];"]
    lines += ["  let li = 1.0 / l;",
              f"  let ob = (bb * {sq}u + q0 + r) * {row}u + hh * {d}u + part * {cols}u;"]
    lines += [f"  {out}[ob + {c}u] = f16(o{c} * li);" for c in range(cols)]
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
    """The measured tiling for this head_dim (else the first of FALLBACK that fits); None where
    none fits, and for the cross-attention's 77 keys where the SIMT kernel takes them (head_dim
    40 and 80: 0.039 and 0.034 ms a call there, 0.058 and 0.033 here)."""
    if keys <= simt_attention.SHORT and simt_attention.plan(batch, queries, keys, heads, head_dim,
                                                            scale, dtype) is not None:
        return None
    for w, r, kt, f in ((TILINGS[head_dim],) if head_dim in TILINGS else ()) + FALLBACK:
        a = Attention(batch, queries, keys, heads, head_dim, scale, w, r, kt, f)
        if a.fits():
            return a
    return None


KERNELS = Kernels("websd.SubgroupMatrixAttention", ("float16",), plan, kernel_name, bias=True)


def make(target):
    """Rewrite each eligible R.nn.attention (see above) to the kernel; simt_attention and
    flash_attention, after this step, take the rest."""
    return make_pass(KERNELS)
