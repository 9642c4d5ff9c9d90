"""Attention on the matrix units (the -sm variants): softmax(q k^T * scale) v in subgroup matrices.

With the convolutions and linear layers on the matrix units, the SD UNet's self-attention at
64x64 latents (4096 tokens, head_dim 40) on the SIMT kernel (stages/passes/attention_kernel.py)
was a third of a step's GPU time. Here a workgroup is one subgroup and serves 32 query rows (two
row tiles of 16 sharing every K and V tile it loads; 16 where the queries are not a multiple
of 32) of one (batch, head), in two passes over the keys, KEYS at a time:
  1. S = Q K^T (rows x KEYS, float32 result matrices), each row's max;
  2. S again, P = exp2((S - max) * scale * log2 e) as float16 through workgroup memory, each
     row's sum, and O += P V in result matrices (no rescaling: the max is already final).
Then O / sum, as float16. Computing S twice costs a third more matrix work and saves rescaling
O at every step, which subgroup matrices (opaque to invocations) could only do through
workgroup memory. Taken: float16, no mask or bias, not causal, queries a multiple of 16, keys
a multiple of KEYS (the 77-token cross-attention stays on the SIMT kernel), head_dim a multiple
of 8 up to 80 (the UNet's 40 and 80).

A first version staged K and V through workgroup memory for 16 rows and ran its softmax on 16
invocations: 7x slower than the SIMT kernel (bench/results/h200/subgroup_matrix_v2/). At 4096
tokens the one-row-tile kernel with bank-conflicted softmax took 4.24 ms, this one 2.50 ms;
prefetching the next keys and a one-pass online softmax did not help (bench/results/h200/
wgsl_kernels/). PyTorch's flash attention: 0.16 ms.

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
from stages.passes.subgroup_matrix_gemm import DIRECTIVES, ENABLES, SUBGROUP, TILE

KEYS = 32                 # keys per step (64 was slower at both sizes: wgsl_kernels/run3)
ROWS = 16                 # query rows per workgroup (one subgroup matrix tall)
# Elements past each score row in workgroup memory, by head_dim, as measured on the H200
# (bench/results/h200/wgsl_kernels/run3.json): 8 took the 4096-token head_dim-40 attention from
# 2.51 to 2.32 ms and slowed the 1024-token head_dim-80 one from 0.25 to 0.46 ms.
PAD_BY_HEAD_DIM = {40: 8}
MAX_HEAD = 80
NAME = re.compile(r"smattn_b(\d+)_q(\d+)_k(\d+)_h(\d+)_d(\d+)_s([0-9a-f]{8})_r(\d)_p(\d+)")


@dataclass(frozen=True)
class Attention:
    batch: int
    queries: int
    keys: int
    heads: int
    head_dim: int
    scale: float
    tiles: int = 2            # row tiles of 16 a workgroup (one subgroup) serves: 1 or 2
    pad: int = 0              # elements past each row of the scores in workgroup memory

    @property
    def padded(self) -> int:
        return -(-self.head_dim // TILE) * TILE

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.queries // (ROWS * self.tiles), self.batch * self.heads, 1)

    @property
    def threads(self) -> int:
        return SUBGROUP

    @property
    def rows(self) -> int:
        """Query rows a workgroup serves."""
        return ROWS * self.tiles

    @property
    def stride(self) -> int:
        """Elements between two rows of the scores (S, float32) and of P (float16)."""
        return KEYS + self.pad

    @property
    def shared_bytes(self) -> int:
        rows = ROWS * self.tiles
        return 2 * rows * self.padded + 6 * rows * self.stride + 4 * (SUBGROUP + rows)

    def fits(self) -> bool:
        # keys in whole steps: the 77-token cross-attention stays on the SIMT kernel
        return (self.tiles in (1, 2) and self.pad % 8 == 0
                and self.queries % (ROWS * self.tiles) == 0 and self.keys % KEYS == 0
                and self.head_dim <= MAX_HEAD and self.head_dim % 8 == 0
                and self.shared_bytes <= 16384)


def kernel_name(a: Attention) -> str:
    bits = struct.unpack("<I", struct.pack("<f", a.scale))[0]
    return (f"smattn_b{a.batch}_q{a.queries}_k{a.keys}_h{a.heads}_d{a.head_dim}_s{bits:08x}"
            f"_r{a.tiles}_p{a.pad}")


def attention_from_name(name: str) -> Attention | None:
    hit = NAME.search(name)
    if not hit:
        return None
    b, q, k, h, d, s, tiles, pad = hit.groups()
    scale = struct.unpack("<f", struct.pack("<I", int(s, 16)))[0]
    return Attention(int(b), int(q), int(k), int(h), int(d), scale, int(tiles), int(pad))


def entry_point(a: Attention, name: str, q: str, k: str, v: str, out: str) -> str:
    """The compute entry point over storage buffers q, k, v, out (float16, BSHD; TVM drops the
    placeholder's unused bias from the kernel).

    Q's rows go through workgroup memory once, zero-padded to the 16-wide tiles; K and V are
    loaded as matrices straight from storage, K^T column-major: the padding columns of a K tile
    hold the next head's values, which meet Q's zeros, and those of a V tile land in output
    columns that are never written. Each K and V tile serves all `a.tiles` row tiles. The
    softmax runs on 2 / tiles invocations per score row, each over its share of the row's
    columns in an order rotated by the row (workgroup memory without bank conflicts); a row's
    invocations meet through workgroup memory (WGSL's uniformity rules refuse subgroup
    shuffles in the loops that need them)."""
    d, dp, h, sk, sq = a.head_dim, a.padded, a.heads, a.keys, a.queries
    row = h * d                       # elements between two tokens of a tensor
    qscale = float(struct.unpack("<f", struct.pack("<f", a.scale * math.log2(math.e)))[0])
    left = f"subgroup_matrix_left<f16, {TILE}, {TILE}>"
    right = f"subgroup_matrix_right<f16, {TILE}, {TILE}>"
    result = f"subgroup_matrix_result<f32, {TILE}, {TILE}>"
    ld = a.stride                     # elements between two rows of S and of P
    dt, kt, rt = a.padded // TILE, KEYS // TILE, a.tiles
    rows = ROWS * rt
    lpr = SUBGROUP // rows            # invocations per score row
    cpl = KEYS // lpr                 # columns each of them takes

    def k_tiles():
        return [f"    let k{j}_{t} = subgroupMatrixLoad<{right}, col_major>(&{k}, "
                f"kbase + (kc + {j * TILE}u) * {row}u + {t * TILE}u, {row}u);"
                for j in range(kt) for t in range(dt)]

    def v_tiles():
        return [f"    let v{j}_{t} = subgroupMatrixLoad<{right}, row_major>(&{v}, "
                f"kbase + (kc + {j * TILE}u) * {row}u + {t * TILE}u, {row}u);"
                for j in range(kt) for t in range(dt)]

    def scores(with_v):
        # S = Q K^T for this step's keys into workgroup memory (then, in pass 2, the V tiles)
        lines = k_tiles()
        for i in range(rt):
            for j in range(kt):
                lines.append(f"    var s{i}_{j} = {result}();")
                lines += [f"    s{i}_{j} = subgroupMatrixMultiplyAccumulate(ql{i}_{t}, k{j}_{t}, s{i}_{j});"
                          for t in range(dt)]
                lines.append(f"    subgroupMatrixStore<row_major>(&websd_s, {i * TILE * ld + j * TILE}u, "
                             f"s{i}_{j}, {ld}u);")
        return lines + (v_tiles() if with_v else [])

    def column(c):                    # this invocation's c-th column of its row, rotated
        return f"r * {ld}u + part * {cpl}u + ({c} + r) % {cpl}u"

    lines = [
        f"var<workgroup> websd_q : array<f16, {rows * dp}>;",
        f"var<workgroup> websd_s : array<f32, {rows * ld}>;",
        f"var<workgroup> websd_p : array<f16, {rows * ld}>;",
        f"var<workgroup> websd_r : array<f32, {SUBGROUP}>;   // per-invocation row partials",
        f"var<workgroup> websd_l : array<f32, {rows}>;       // row sums",
        "",
        f"@compute @workgroup_size({SUBGROUP}, 1, 1)",
        f"fn {name}(@builtin(workgroup_id) wg : vec3<u32>,",
        "    @builtin(local_invocation_index) lid : u32) {",
        f"  let q0 = wg.x * {rows}u;",
        f"  let bb = wg.y / {h}u;",
        f"  let hh = wg.y % {h}u;",
        f"  let kbase = bb * {sk * row}u + hh * {d}u;",
        f"  for (var i = lid; i < {rows * dp}u; i += {SUBGROUP}u) {{",
        f"    let c = i % {dp}u;",
        "    var x = f16(0);",
        f"    if (c < {d}u) {{ x = {q}[(bb * {sq}u + q0 + i / {dp}u) * {row}u + hh * {d}u + c]; }}",
        "    websd_q[i] = x;",
        "  }",
        "  workgroupBarrier();",
    ]
    lines += [f"  let ql{i}_{t} = subgroupMatrixLoad<{left}, row_major>(&websd_q, "
              f"{i * TILE * dp + t * TILE}u, {dp}u);" for i in range(rt) for t in range(dt)]
    lines += [f"  let r = lid / {lpr}u;", f"  let part = lid % {lpr}u;", "  var m = -3.0e38;"]
    lines += [f"  for (var kc = 0u; kc < {sk}u; kc += {KEYS}u) {{"]
    lines += scores(False)
    lines += ["    workgroupBarrier();",
              f"    for (var c = 0u; c < {cpl}u; c++) {{",
              f"      m = max(m, websd_s[{column('c')}]);",
              "    }",
              "    workgroupBarrier();",
              "  }"]
    if lpr > 1:                       # the invocations of a row meet through workgroup memory
        lines += ["  websd_r[lid] = m;", "  workgroupBarrier();",
                  f"  m = max(websd_r[r * 2u], websd_r[r * 2u + 1u]);"]
    lines.append("  var l = 0.0;")
    lines += [f"  var o{i}_{t} = {result}();" for i in range(rt) for t in range(dt)]
    lines += [f"  for (var kc = 0u; kc < {sk}u; kc += {KEYS}u) {{"]
    lines += scores(True)
    lines += [
        "    workgroupBarrier();",
        f"    for (var c = 0u; c < {cpl}u; c++) {{",
        f"      let at = {column('c')};",
        f"      let p = f16(exp2((websd_s[at] - m) * {qscale!r}));",
        "      l += f32(p);",
        "      websd_p[at] = p;",
        "    }",
        "    workgroupBarrier();",
    ]
    for i in range(rt):
        for j in range(kt):
            lines.append(f"    let p{i}_{j} = subgroupMatrixLoad<{left}, row_major>(&websd_p, "
                         f"{i * TILE * ld + j * TILE}u, {ld}u);")
    for i in range(rt):
        for t in range(dt):
            lines += [f"    o{i}_{t} = subgroupMatrixMultiplyAccumulate(p{i}_{j}, v{j}_{t}, o{i}_{t});"
                      for j in range(kt)]
    lines += ["  }", "  websd_r[lid] = l;", "  workgroupBarrier();",
              f"  if (lid < {rows}u) {{ websd_l[lid] = "
              + " + ".join(f"websd_r[lid * {lpr}u + {i}u]" for i in range(lpr)) + "; }"]
    # O / sum, through workgroup memory one 16x16 tile at a time
    for i in range(rt):
        for t in range(dt):
            lines += [
                "  workgroupBarrier();",
                f"  subgroupMatrixStore<row_major>(&websd_s, 0u, o{i}_{t}, {TILE}u);",
                "  workgroupBarrier();",
                f"  for (var e = lid; e < {TILE * TILE}u; e += {SUBGROUP}u) {{",
                f"    let c = {t * TILE}u + e % {TILE}u;",
                f"    if (c < {d}u) {{",
                f"      {out}[(bb * {sq}u + q0 + {i * TILE}u + e / {TILE}u) * {row}u + hh * {d}u + c] = "
                f"f16(websd_s[e] / websd_l[{i * TILE}u + e / {TILE}u]);",
                "    }",
                "  }",
            ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def wgsl_body(name: str, source: str) -> str | None:
    from stages.passes.wgsl_swap import rewrite

    a = attention_from_name(name)
    if a is None:
        return None
    return rewrite(source, name, lambda fn, bufs: entry_point(a, fn, bufs["q"], bufs["k"],
                                                              bufs["v"], bufs["out"]),
                   ENABLES, DIRECTIVES)


def plan(batch: int, queries: int, keys: int, heads: int, head_dim: int, scale: float,
         dtype: str) -> Attention | None:
    """Two row tiles a workgroup where the queries allow, else one; None where none fits, and
    where the SIMT kernel holds two query rows an invocation (head_dim 40): there it is faster
    (4096 tokens: 1.26 against 2.32 ms here, bench/results/h200/wgsl_kernels/
    run9_simt_attention2/; at head_dim 80 this kernel's 0.25 ms beats its 0.41)."""
    if simt_attention.two_rows_fit(head_dim):
        return None
    a = Attention(batch, queries, keys, heads, head_dim, scale, pad=PAD_BY_HEAD_DIM.get(head_dim, 0))
    if not a.fits():
        a = Attention(batch, queries, keys, heads, head_dim, scale, tiles=1, pad=a.pad)
    return a if a.fits() else None


KERNELS = Kernels("websd.SubgroupMatrixAttention", ("float16",), plan, kernel_name, bias=True)


def make(target):
    """Rewrite each eligible R.nn.attention (see above) to the kernel; simt_attention and
    flash_attention, after this step, take the rest."""
    return make_pass(KERNELS)
