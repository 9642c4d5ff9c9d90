"""The attention kernel for CPUs: softmax(q k^T * scale + bias) v with vector lanes over keys.

The GPU kernel (attention_kernel.py) gives each query row its own invocation and walks the keys
one dot product at a time; run on a CPU it is scalar code, each dot product one chain of
dependent multiply-adds (SD v1.5's 64x64 self-attention: 21 G of them per UNet call). Here a
task takes ROWS query rows of one (batch, head) and folds the keys in blocks of LANES:

- scores: a ROWS x LANES register tile, summed over the head dim from q (one broadcast per row)
  and a vector of LANES keys; the keys are read from kt, k transposed once per call to
  (batch, head, head_dim, keys) so that a vector of keys is one load (a small pass beside the
  product: b * s * h * d floats);
- online softmax per row, as the GPU kernel (running max and sum, scores in base 2), with the
  exponentials in lanes through `exp2`, a polynomial (LLVM's own would call exp2f per lane);
- the output rows (ROWS x dv in registers/L1) take each key's value row, one vector load per key
  for all ROWS rows.
Tasks run on TVM's thread pool. Math in float32; the output has the input's dtype.
"""

from __future__ import annotations

import math

ROWS = 8            # query rows per task: each vector of keys serves them all
LANES = 16          # keys per block: one AVX-512 / two AVX2 registers of float32
NEG_LARGE = -1.0e30  # a masked score and the running max before any key
# 2**f on [0, 1): degree-6 fit (relative error 8.4e-8 in float32, below float32's rounding of
# the scores themselves); exp2(x) = 2**floor(x) * P(x - floor(x)), the power by its exponent bits
EXP2_POLY = (1.0, 0.6931470036506653, 0.2402298003435135, 0.05548352375626564,
             0.009678472764790058, 0.0012443081941455603, 0.00021690608991775662)


def exp2(x):
    """2**x for float32 x <= 0 (a score minus its row's max), in ops LLVM keeps in lanes; below
    2**-126 the result is 0's neighbour 2**-126 * P, which no sum of weights >= 1 notices."""
    from tvm import tirx
    from tvm.script import tirx as T

    x = T.max(x, T.float32(-126.0))
    n = T.floor(x)
    f = x - n
    p = T.float32(EXP2_POLY[-1])
    for c in EXP2_POLY[-2::-1]:
        p = p * f + T.float32(c)
    bits = tirx.shift_left(T.cast(n, "int32") + 127, 23)
    return p * T.reinterpret("float32", bits)


def build(q_shape, k_shape, v_shape, bias_shape, dtype: str, scale: float | None,
          causal: bool, bias_dtype: str | None = None):
    """The PrimFunc for one attention signature: (q, k, v, bias, out), BSHD but the bias, which
    is 4-D and broadcastable to (batch, heads, queries, keys). `causal` masks key > query."""
    from tvm.script import tirx as T

    from stages.passes.attention_kernel import sizes

    (b, sq, h, d, sk, dv), (bb, bh, bq, bk), scale = sizes(q_shape, k_shape, v_shape,
                                                           bias_shape, scale)
    bdtype = bias_dtype or dtype
    q_tiles = (sq + ROWS - 1) // ROWS
    tasks = b * h * q_tiles
    # the output rows in vectors of 16, 8 or 4: LLVM splits one of dv lanes (SD's 40) into odd
    # pieces it shuffles about
    chunk = next((c for c in (LANES, 8, 4) if dv % c == 0), 1)
    blocks = (sk + LANES - 1) // LANES
    sk_pad = blocks * LANES
    qscale = float(scale) * math.log2(math.e)
    log2e = math.log2(math.e)

    def where_key_counts(key, row, value, otherwise):
        """value where the key exists (sk pads to whole blocks) and, causal, is <= the row;
        no select at all where every key of every block counts."""
        if sk_pad == sk and not causal:
            return value
        cond = key < sk if sk_pad != sk else None
        if causal:
            cond = key <= row if cond is None else T.And(cond, key <= row)
        return T.if_then_else(cond, value, otherwise)

    def bias_at(bias, bi, hi, row, key):
        """The bias element of (batch, head, query row, key), a broadcast dim read at 0 (a
        literal 0, not key * 0: LLVM would gather a vector of it)."""
        return T.cast(bias[bi if bb > 1 else 0, hi if bh > 1 else 0,
                           T.min(row, sq - 1) if bq > 1 else 0,
                           T.min(key, sk - 1) if bk > 1 else 0], "float32")

    @T.prim_func(private=True, s_tir=True)
    def attention(q: T.Buffer((b, sq, h, d), dtype), k: T.Buffer((b, sk, h, d), dtype),
                  v: T.Buffer((b, sk, h, dv), dtype), bias: T.Buffer((bb, bh, bq, bk), bdtype),
                  out: T.Buffer((b, sq, h, dv), dtype)):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
        kt = T.alloc_buffer((b, h, d, sk_pad), "float32")
        # NOTE: each task's rows of q, scores and outputs live in memory (L1), not in "local"
        # buffers: LLVM splits a local array read both in lanes and one by one into scalars and
        # rebuilds every vector from them (measured: 3x slower)
        q_all = T.alloc_buffer((tasks, ROWS, d), "float32")
        s_all = T.alloc_buffer((tasks, ROWS, LANES), "float32")
        for bh_ in T.parallel(b * h):
            for i, j in T.grid(d, sk_pad):
                with T.sblock("transpose"):
                    T.reads()
                    T.writes()
                    kt[bh_ // h, bh_ % h, i, j] = T.if_then_else(
                        j < sk, T.cast(k[bh_ // h, T.min(j, sk - 1), bh_ % h, i], "float32"),
                        T.float32(0))
        for task in T.parallel(tasks):
            with T.sblock("attention"):
                T.reads()
                T.writes()
                # registers: read and written in whole vectors only
                o_reg = T.alloc_buffer((ROWS, dv), "float32", scope="local")
                s_acc = T.alloc_buffer((ROWS, LANES), "float32", scope="local")
                m = T.alloc_buffer((ROWS,), "float32", scope="local")
                m_new = T.alloc_buffer((ROWS,), "float32", scope="local")
                alpha = T.alloc_buffer((ROWS,), "float32", scope="local")
                total = T.alloc_buffer((ROWS,), "float32", scope="local")
                bi = task // (h * q_tiles)
                hi = task // q_tiles % h
                row0 = task % q_tiles * ROWS
                for r in T.unroll(ROWS):
                    for i in T.serial(d):
                        q_all[task, r, i] = T.cast(q[bi, T.min(row0 + r, sq - 1), hi, i],
                                                   "float32") * qscale
                    for c0 in T.serial(dv // chunk):
                        for c1 in T.vectorized(chunk):
                            o_reg[r, c0 * chunk + c1] = T.float32(0)
                    m[r] = T.float32(NEG_LARGE)
                    total[r] = T.float32(0)
                for blk in T.serial(blocks):
                    for r in T.unroll(ROWS):
                        for j in T.vectorized(LANES):
                            s_acc[r, j] = T.float32(0)
                    for i in T.serial(d):
                        for r in T.unroll(ROWS):
                            for j in T.vectorized(LANES):
                                s_acc[r, j] = s_acc[r, j] + q_all[task, r, i] * kt[
                                    bi, hi, i, blk * LANES + j]
                    for r in T.unroll(ROWS):
                        for j in T.vectorized(LANES):
                            s_all[task, r, j] = where_key_counts(
                                blk * LANES + j, row0 + r,
                                s_acc[r, j]
                                + bias_at(bias, bi, hi, row0 + r, blk * LANES + j) * log2e,
                                T.float32(NEG_LARGE))
                        m_new[r] = m[r]
                        for j in T.serial(LANES):
                            m_new[r] = T.max(m_new[r], s_all[task, r, j])
                        alpha[r] = exp2(m[r] - m_new[r])
                        for j in T.vectorized(LANES):
                            # NOTE: a masked key weighs 0 even when every key so far is masked
                            s_all[task, r, j] = where_key_counts(
                                blk * LANES + j, row0 + r, exp2(s_all[task, r, j] - m_new[r]),
                                T.float32(0))
                        total[r] = total[r] * alpha[r]
                        for j in T.serial(LANES):
                            total[r] = total[r] + s_all[task, r, j]
                        for c0 in T.serial(dv // chunk):
                            for c1 in T.vectorized(chunk):
                                o_reg[r, c0 * chunk + c1] = (o_reg[r, c0 * chunk + c1]
                                                             * alpha[r])
                        m[r] = m_new[r]
                    for c0 in T.serial(dv // chunk):
                        for j in T.serial(LANES):
                            for r in T.unroll(ROWS):
                                for c1 in T.vectorized(chunk):
                                    o_reg[r, c0 * chunk + c1] = (
                                        o_reg[r, c0 * chunk + c1] + s_all[task, r, j] * T.cast(
                                            v[bi, T.min(blk * LANES + j, sk - 1), hi,
                                              c0 * chunk + c1], "float32"))
                for r in T.unroll(ROWS):
                    if row0 + r < sq:
                        for c0 in T.serial(dv // chunk):
                            for c1 in T.vectorized(chunk):
                                out[bi, row0 + r, hi, c0 * chunk + c1] = T.cast(
                                    o_reg[r, c0 * chunk + c1] / total[r], dtype)

    # NOTE: re-parsed from its own text, as attention_kernel.py does: the parsed function's
    # source spans name this file by its absolute path, which would differ between checkouts
    import tvm

    return tvm.script.from_source(attention.script())
