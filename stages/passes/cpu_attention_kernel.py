"""The attention kernel for CPUs: softmax(q k^T * scale + bias) v with vector lanes over keys.

The GPU kernel (attention_kernel.py) gives each query row its own invocation and walks the keys
one dot product at a time; run on a CPU it is scalar code, each dot product one chain of
dependent multiply-adds (SD v1.5's 64x64 self-attention: 21 G of them per UNet call). Here a
task takes `rows` query rows of one (batch, head) and walks the keys in blocks of KEY_VECTORS
vectors:

- k and v are copied once per call into float32 panels (a small pass beside the product:
  b * s * h * (d + dv) floats): k as (batch * head, keys / 2L, head dim, 2L), so that a score
  tile's keys at one head-dim index are one contiguous pair of registers and the tile's whole
  strip is contiguous (read in place, k's rows a multiple of 4 KiB apart fell in one L1 set);
  v as (batch * head, dv / chunk, keys, chunk), so that one chunk of every key's value is
  contiguous (the VAE's 512-wide values read in place were 2 KiB apart per key: its 1 x 4096 x
  512 attention 897 -> 382 ms, torch 244 ms);
- scores: half the rows at a time, a (rows / 2) x 2L register tile summed over the head dim
  from q (one broadcast per row) and two vectors of keys, into the block's score rows (L1);
- online softmax per row and block, as the GPU kernel (running max and sum, scores in base 2):
  the block's max and sum in lanes, then across them; the exponentials in lanes through `exp2`,
  a polynomial (LLVM's own would call exp2f per lane);
- the output: for each register-wide chunk of dv, `rows` accumulators (the old outputs times
  the block's rescale) take each key's weight (a broadcast) times its value chunk (one load).
L is the instruction set's register lanes (cpu_rule.register_lanes), and `rows` fits both
tiles in 16 registers: (rows / 2) x 2 accumulators + 2 key vectors + a broadcast, rows + a
value + a broadcast. Measured (Zen 2, AVX2, 2 threads, SD's 2 x 4096 x 8 x 40 self-attention):
the earlier 8 x 16 tile with one block of 16 keys, k transposed in place and the outputs in
memory ran 724 ms; this 402 ms, torch's scaled_dot_product_attention 377-423 ms.
Tasks run on TVM's thread pool. Math in float32; the output has the input's dtype.
"""

from __future__ import annotations

import math

ROWS = 12           # query rows per task: 6 + 6 in the score tiles, 12 in the output's
KEY_VECTORS = 16    # register-wide key vectors per softmax block (128 keys on AVX2)
NEG_LARGE = -1.0e30  # a masked score and the running max before any key

# 2**f on [0, 1): degree-6 fit (relative error 8.4e-8 in float32, below float32's rounding of
# the scores themselves); exp2(x) = 2**floor(x) * P(x - floor(x)), the power by its exponent bits
EXP2_POLY = (1.0, 0.6931470036506653, 0.2402298003435135, 0.05548352375626564,
             0.009678472764790058, 0.0012443081941455603, 0.00021690608991775662)


def exp2(x):
    """2**x for float32 x <= 0 (a score minus its row's max), in ops LLVM keeps in lanes; below
    2**-126 the result is 0's neighbour 2**-126 * P, which no sum of weights >= 1 notices."""
    from tvm.script import tirx as T

    from stages.passes.vector_math import pow2

    x = T.max(x, T.float32(-126.0))
    n = T.floor(x)
    f = x - n
    p = T.float32(EXP2_POLY[-1])
    for c in EXP2_POLY[-2::-1]:
        p = p * f + T.float32(c)
    return p * pow2(n)


def build(q_shape, k_shape, v_shape, bias_shape, dtype: str, scale: float | None,
          causal: bool, bias_dtype: str | None = None, lanes: int = 8):
    """The PrimFunc for one attention signature: (q, k, v, bias, out), BSHD but the bias, which
    is 4-D and broadcastable to (batch, heads, queries, keys). `causal` masks key > query;
    `lanes` is the float32 lanes of one vector register."""
    from tvm.script import tirx as T

    from stages.passes.attention_kernel import sizes

    (b, sq, h, d, sk, dv), (bb, bh, bq, bk), scale = sizes(q_shape, k_shape, v_shape,
                                                           bias_shape, scale)
    bdtype = bias_dtype or dtype
    R, SR, L = ROWS, ROWS // 2, lanes
    SL = 2 * L           # the score tile's keys: two registers
    q_tiles = (sq + R - 1) // R
    tasks = b * h * q_tiles
    # the output rows in register-wide chunks (LLVM splits one of dv lanes, SD's 40, into odd
    # pieces it shuffles about)
    chunk = next((c for c in (L, 8, 4) if dv % c == 0), 1)
    # a block: KEY_VECTORS vectors of keys, or as few pairs as hold them all (CLIP's 77: 96)
    kv = min(KEY_VECTORS, 2 * ((sk + SL - 1) // SL))
    kb = kv * L
    blocks = (sk + kb - 1) // kb
    sk_pad = blocks * kb
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
        kp = T.alloc_buffer((b * h, sk_pad // SL, d, SL), "float32")
        vp = T.alloc_buffer((b * h, dv // chunk, sk_pad, chunk), "float32")
        # NOTE: each task's rows of q, scores and partial reductions live in memory (L1), not
        # in "local" buffers: LLVM splits a local array read both in lanes and one by one into
        # scalars and rebuilds every vector from them (measured: 3x slower)
        q_all = T.alloc_buffer((tasks, R, d), "float32")
        s_all = T.alloc_buffer((tasks, R, kb), "float32")
        red = T.alloc_buffer((tasks, L), "float32")
        for bh_ in T.parallel(b * h):
            for p, i, j in T.grid(sk_pad // SL, d, SL):
                with T.sblock("pack_k"):
                    T.reads()
                    T.writes()
                    kp[bh_, p, i, j] = T.if_then_else(
                        p * SL + j < sk,
                        T.cast(k[bh_ // h, T.min(p * SL + j, sk - 1), bh_ % h, i], "float32"),
                        T.float32(0))
            for c0, j, c1 in T.grid(dv // chunk, sk_pad, chunk):
                with T.sblock("pack_v"):
                    T.reads()
                    T.writes()
                    vp[bh_, c0, j, c1] = T.if_then_else(
                        j < sk, T.cast(v[bh_ // h, T.min(j, sk - 1), bh_ % h, c0 * chunk + c1],
                                       "float32"),
                        T.float32(0))
        for task in T.parallel(tasks):
            with T.sblock("attention"):
                T.reads()
                T.writes()
                # registers (s_acc, pv) or the stack (o_reg): read and written in whole vectors
                o_reg = T.alloc_buffer((R, dv), "float32", scope="local")
                s_acc = T.alloc_buffer((SR, SL), "float32", scope="local")
                pv = T.alloc_buffer((R, chunk), "float32", scope="local")
                m = T.alloc_buffer((R,), "float32", scope="local")
                m_new = T.alloc_buffer((R,), "float32", scope="local")
                alpha = T.alloc_buffer((R,), "float32", scope="local")
                total = T.alloc_buffer((R,), "float32", scope="local")
                bi = task // (h * q_tiles)
                hi = task // q_tiles % h
                row0 = task % q_tiles * R
                for r in T.unroll(R):
                    for i in T.serial(d):
                        q_all[task, r, i] = T.cast(q[bi, T.min(row0 + r, sq - 1), hi, i],
                                                   "float32") * qscale
                    for c0 in T.serial(dv // chunk):
                        for c1 in T.vectorized(chunk):
                            o_reg[r, c0 * chunk + c1] = T.float32(0)
                    m[r] = T.float32(NEG_LARGE)
                    total[r] = T.float32(0)
                for blk in T.serial(blocks):
                    for kc, half in T.grid(kv // 2, 2):
                        for r in T.unroll(SR):
                            for j in T.vectorized(SL):
                                s_acc[r, j] = T.float32(0)
                        for i in T.serial(d):
                            for r in T.unroll(SR):
                                for j in T.vectorized(SL):
                                    s_acc[r, j] = s_acc[r, j] + q_all[
                                        task, half * SR + r, i] * kp[
                                        bi * h + hi, blk * (kv // 2) + kc, i, j]
                        for r in T.unroll(SR):
                            for j in T.vectorized(SL):
                                s_all[task, half * SR + r, kc * SL + j] = where_key_counts(
                                    blk * kb + kc * SL + j, row0 + half * SR + r,
                                    s_acc[r, j]
                                    + bias_at(bias, bi, hi, row0 + half * SR + r,
                                              blk * kb + kc * SL + j)
                                    * log2e,
                                    T.float32(NEG_LARGE))
                    # each row's block max and sum: lanes first, then across them
                    for r in T.serial(R):
                        for j in T.vectorized(L):
                            red[task, j] = s_all[task, r, j]
                        for kc in T.serial(kv - 1):
                            for j in T.vectorized(L):
                                red[task, j] = T.max(red[task, j],
                                                     s_all[task, r, kc * L + L + j])
                        m_new[r] = m[r]
                        for j in T.serial(L):
                            m_new[r] = T.max(m_new[r], red[task, j])
                        alpha[r] = exp2(m[r] - m_new[r])
                        for j in T.vectorized(L):
                            red[task, j] = T.float32(0)
                        for kc in T.serial(kv):
                            for j in T.vectorized(L):
                                # NOTE: a masked key weighs 0 even when every key so far is
                                # masked
                                s_all[task, r, kc * L + j] = where_key_counts(
                                    blk * kb + kc * L + j, row0 + r,
                                    exp2(s_all[task, r, kc * L + j] - m_new[r]), T.float32(0))
                                red[task, j] = red[task, j] + s_all[task, r, kc * L + j]
                        total[r] = total[r] * alpha[r]
                        for j in T.serial(L):
                            total[r] = total[r] + red[task, j]
                        m[r] = m_new[r]
                    # the outputs, rescaled to the new max, take the block's weighted values
                    for c0 in T.serial(dv // chunk):
                        for r in T.unroll(R):
                            for c1 in T.vectorized(chunk):
                                pv[r, c1] = o_reg[r, c0 * chunk + c1] * alpha[r]
                        for j in T.serial(kb):
                            for r in T.unroll(R):
                                for c1 in T.vectorized(chunk):
                                    pv[r, c1] = pv[r, c1] + s_all[task, r, j] * vp[
                                        bi * h + hi, c0, blk * kb + j, c1]
                        for r in T.unroll(R):
                            for c1 in T.vectorized(chunk):
                                o_reg[r, c0 * chunk + c1] = pv[r, c1]
                for r in T.unroll(R):
                    if row0 + r < sq:
                        for c0 in T.serial(dv // chunk):
                            for c1 in T.vectorized(chunk):
                                out[bi, row0 + r, hi, c0 * chunk + c1] = T.cast(
                                    o_reg[r, c0 * chunk + c1] / total[r], dtype)

    # NOTE: re-parsed from its own text, as attention_kernel.py does: the parsed function's
    # source spans name this file by its absolute path, which would differ between checkouts
    import tvm

    return tvm.script.from_source(attention.script())
