"""The attention kernel: softmax(q k^T * scale + bias) v in one pass over the keys, as TensorIR.

Flash-style: each query row keeps a running max `m`, a running sum `l` and its output row in
registers, and folds in the keys a few at a time (online softmax), so the (batch, heads,
queries, keys) score matrix never exists. SD v1.5's UNet at 64x64 latents would otherwise hold
2 x 8 x 4096 x 4096 float32 scores (1 GiB) in one buffer, over WebGPU's 128 MiB binding limit.

GPU layout: a workgroup of `threads` invocations serves threads / G query rows of one (batch,
head); the G invocations of a row each own head_dim / G of q and of the output (G grows with
head_dim so that a row's registers stay <= 64 floats: 1 for SD's 40, 2 for 80, 4 for 160, 8 for
the VAE's 512). With G > 1 the partial dot products of KEYS_PER_STEP keys meet in workgroup
memory (double-buffered: one barrier per step). K and V are read from storage by every row of
the workgroup at once (the same addresses: a broadcast through the cache). Scores are in base 2
(q pre-scaled by scale * log2 e; exp2). On CPU the same body runs with G = 1, one row per loop
iteration, rows in parallel.

Inputs are BSHD (batch, sequence, heads, head_dim), as R.nn.attention takes them; math in
float32 whatever the input dtype; the output has the input's dtype.
"""

from __future__ import annotations

import math

KEYS_PER_STEP = 4        # keys folded in per step: independent dot products for ILP
MAX_ROW_REGISTERS = 64   # floats of q (and of the output) one invocation holds
THREADS = 128            # invocations per workgroup (WebGPU guarantees 256)
NEG_LARGE = -1.0e30      # a masked score and the running max before any key (WGSL has no inf)


def threads_per_row(head_dim: int) -> int:
    g = 1
    while head_dim // g > MAX_ROW_REGISTERS and head_dim % (2 * g) == 0:
        g *= 2
    return g


def shared_bytes(head_dim: int, threads: int = THREADS) -> int:
    """Workgroup memory the GPU kernel uses (the partial dot products when G > 1)."""
    return 0 if threads_per_row(head_dim) == 1 else 2 * KEYS_PER_STEP * threads * 4


def sizes(q_shape, k_shape, v_shape, bias_shape, scale: float | None):
    """An attention signature's sizes, (batch, queries, heads, head dim, keys, value dim), the
    bias's 4 dims, and the scale (1 / sqrt(head dim) where the op gives none)."""
    b, sq, h, d = (int(x) for x in q_shape)
    sk, dv = int(k_shape[1]), int(v_shape[3])
    return ((b, sq, h, d, sk, dv), tuple(int(x) for x in bias_shape),
            1.0 / math.sqrt(d) if scale is None else scale)


def build(q_shape, k_shape, v_shape, bias_shape, dtype: str, scale: float | None,
          causal: bool, gpu: bool, max_threads: int = THREADS, bias_dtype: str | None = None):
    """The PrimFunc for one attention signature: (q, k, v, bias, out), all BSHD but bias.

    bias_shape is 4-D, broadcastable to (batch, heads, queries, keys); pass a (1, 1, 1, 1) zero
    for none. Its dtype may differ from q's (the float16 text encoder's mask stays float32).
    `causal` masks key > query (TopLeft).
    """
    from tvm.script import tirx as T

    (b, sq, h, d, sk, dv), (bb, bh, bq, bk), scale = sizes(q_shape, k_shape, v_shape,
                                                           bias_shape, scale)
    bdtype = bias_dtype or dtype
    g = threads_per_row(d) if gpu else 1
    if dv % g:
        g = 1
    dg, dvg = d // g, dv // g
    threads = min(THREADS, max_threads) if gpu else 1
    rows = threads // g
    q_tiles = (sq + rows - 1) // rows
    n_groups = b * h * q_tiles
    steps = (sk + KEYS_PER_STEP - 1) // KEYS_PER_STEP
    u_n = KEYS_PER_STEP
    qscale = float(scale) * math.log2(math.e)
    log2e = math.log2(math.e)
    # broadcast flags of the bias: index 0 where its dim is 1
    fb, fh, fq, fk = int(bb > 1), int(bh > 1), int(bq > 1), int(bk > 1)
    is_causal = int(bool(causal))
    exchange = g > 1
    part_shape, part_scope = ((2, u_n, threads), "shared") if exchange else ((1,), "local")

    if gpu:
        def outer(n):
            return T.thread_binding(n, thread="blockIdx.x")

        def inner(n):
            return T.thread_binding(n, thread="threadIdx.x")
    else:
        def outer(n):
            return T.parallel(n)

        def inner(n):
            return T.serial(n)

    @T.prim_func(private=True, s_tir=True)
    def attention(q: T.Buffer((b, sq, h, d), dtype), k: T.Buffer((b, sk, h, d), dtype),
                  v: T.Buffer((b, sk, h, dv), dtype), bias: T.Buffer((bb, bh, bq, bk), bdtype),
                  out: T.Buffer((b, sq, h, dv), dtype)):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
        for wg in outer(n_groups):
            for tx in inner(threads):
                with T.sblock("attention"):
                    T.reads()
                    T.writes()
                    # NOTE: allocated here, under the thread bindings: at the root, TVM makes a
                    # shared buffer one storage buffer for every workgroup (a race)
                    part = T.alloc_buffer(part_shape, "float32", scope=part_scope)
                    q_reg = T.alloc_buffer((dg,), "float32", scope="local")
                    o_reg = T.alloc_buffer((dvg,), "float32", scope="local")
                    s = T.alloc_buffer((u_n,), "float32", scope="local")
                    st = T.alloc_buffer((4,), "float32", scope="local")  # m, l, m_new, alpha
                    bi = wg // (h * q_tiles)
                    hi = wg // q_tiles % h
                    row = wg % q_tiles * rows + tx // g
                    rc = T.min(row, sq - 1)
                    gi = tx % g
                    for i in T.unroll(dg):
                        q_reg[i] = T.cast(q[bi, rc, hi, gi * dg + i], "float32") * qscale
                    for i in T.unroll(dvg):
                        o_reg[i] = T.float32(0)
                    st[0] = T.float32(NEG_LARGE)
                    st[1] = T.float32(0)
                    for step in T.serial(steps):
                        for u in T.unroll(u_n):
                            s[u] = T.float32(0)
                            for i in T.unroll(dg):
                                s[u] = s[u] + q_reg[i] * T.cast(
                                    k[bi, T.min(step * u_n + u, sk - 1), hi, gi * dg + i],
                                    "float32")
                        if exchange:
                            for u in T.unroll(u_n):
                                part[step % 2, u, tx] = s[u]
                            T.tvm_storage_sync("shared")
                            for u in T.unroll(u_n):
                                s[u] = T.float32(0)
                                for j in T.unroll(g):
                                    s[u] = s[u] + part[step % 2, u, tx // g * g + j]
                        for u in T.unroll(u_n):
                            s[u] = T.if_then_else(
                                step * u_n + u < sk
                                and (is_causal == 0 or step * u_n + u <= row),
                                s[u] + T.cast(bias[bi * fb, hi * fh, rc * fq,
                                                   T.min(step * u_n + u, sk - 1) * fk],
                                              "float32") * log2e,
                                T.float32(NEG_LARGE))
                        st[2] = st[0]
                        for u in T.unroll(u_n):
                            st[2] = T.max(st[2], s[u])
                        st[3] = T.exp2(st[0] - st[2])
                        st[1] = st[1] * st[3]
                        for u in T.unroll(u_n):
                            # NOTE: a masked key weighs 0 even when every key so far is masked
                            s[u] = T.if_then_else(
                                step * u_n + u < sk
                                and (is_causal == 0 or step * u_n + u <= row),
                                T.exp2(s[u] - st[2]), T.float32(0))
                            st[1] = st[1] + s[u]
                        for i in T.unroll(dvg):
                            o_reg[i] = o_reg[i] * st[3]
                            for u in T.unroll(u_n):
                                o_reg[i] = o_reg[i] + s[u] * T.cast(
                                    v[bi, T.min(step * u_n + u, sk - 1), hi, gi * dvg + i],
                                    "float32")
                        st[0] = st[2]
                    if row < sq:
                        for i in T.unroll(dvg):
                            out[bi, row, hi, gi * dvg + i] = T.cast(o_reg[i] / st[1], dtype)

    # NOTE: re-parsed from its own text: the parsed function carries source spans naming this
    # file by its absolute path, which would make the module differ between two checkouts
    # (and every stage after `passes` rebuild in a fresh clone)
    import tvm

    return tvm.script.from_source(attention.script())
