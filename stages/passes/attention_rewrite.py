"""Self-attention as a call of one hand-written WGSL kernel: the placeholder and the graph rewrite
the attention passes share (stages/passes/subgroup_matrix_attention.py for the matrix units,
simt_attention.py for every adapter); each pass brings its kernels (`Kernels`).

An R.nn.attention without a mask or bias and not causal, whose q, k and v share a dtype the
kernels take and one head_dim, becomes a call of the kernel `plan` picks for it (None: it stays,
for flash_attention). The kernel enters the build as a TIR PrimFunc with the real kernel's
buffers, grid and workgroup and a plain body (`placeholder`), named after what it computes; the
build swaps its WGSL in when it packs the library (stages/passes/wgsl_swap.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Kernels:
    """A family of attention kernels as the rewrite uses it. A kernel spec (`plan`'s result)
    has batch, queries, keys, heads, head_dim, scale, grid, and `threads` and `rows` (the
    workgroup's invocations and the query rows it serves, one an invocation in the placeholder)."""
    pass_name: str
    dtypes: tuple[str, ...]
    plan: Callable[..., object]        # (batch, queries, keys, heads, head_dim, scale, dtype) -> spec | None
    name: Callable[[object], str]      # spec -> kernel name
    bias: bool                         # the kernel takes a (1, 1, 1, 1) zero bias after v


def placeholder(a, dtype: str, bias: bool):
    """The TIR kernel the WGSL replaces: buffers (q, k, v[, bias], out), grid and workgroup of
    the WGSL kernel, and a plain body (invocation t computes query rows t, t + threads, ...
    below `rows` of its workgroup's block, each in two passes over the keys) that computes the
    same where the swap does not happen."""
    from tvm.script import tirx as T

    b, sq, sk, h, d = a.batch, a.queries, a.keys, a.heads, a.head_dim
    gx, gy, _ = a.grid
    threads, rows = a.threads, a.rows
    per = -(-rows // threads)
    qscale = a.scale * math.log2(math.e)

    @T.macro
    def body(q, k, v, out):
        for bx in T.thread_binding(gx, thread="blockIdx.x"):
            for by in T.thread_binding(gy, thread="blockIdx.y"):
                for tx in T.thread_binding(threads, thread="threadIdx.x"):
                    with T.sblock("attention"):
                        T.reads()
                        T.writes()
                        st = T.alloc_buffer((3,), "float32", scope="local")   # max, sum, score
                        acc = T.alloc_buffer((d,), "float32", scope="local")
                        for rr in T.serial(per):
                            if rr * threads + tx < rows:
                                i = bx * rows + rr * threads + tx
                                st[0] = T.float32(-3.0e38)
                                st[1] = T.float32(0)
                                for c in T.serial(d):
                                    acc[c] = T.float32(0)
                                for j in T.serial(sk):
                                    st[2] = T.float32(0)
                                    for c in T.serial(d):
                                        st[2] = st[2] + T.cast(q[by // h, i, by % h, c], "float32") * T.cast(k[by // h, j, by % h, c], "float32")
                                    st[0] = T.max(st[0], st[2])
                                for j in T.serial(sk):
                                    st[2] = T.float32(0)
                                    for c in T.serial(d):
                                        st[2] = st[2] + T.cast(q[by // h, i, by % h, c], "float32") * T.cast(k[by // h, j, by % h, c], "float32")
                                    st[2] = T.exp2((st[2] - st[0]) * T.float32(qscale))
                                    st[1] = st[1] + st[2]
                                    for c in T.serial(d):
                                        acc[c] = acc[c] + st[2] * T.cast(v[by // h, j, by % h, c], "float32")
                                for c in T.serial(d):
                                    out[by // h, i, by % h, c] = T.cast(acc[c] / st[1], dtype)

    if bias:
        @T.prim_func(private=True, s_tir=True)
        def attn(q: T.Buffer((b, sq, h, d), dtype), k: T.Buffer((b, sk, h, d), dtype),
                 v: T.Buffer((b, sk, h, d), dtype), zero: T.Buffer((1, 1, 1, 1), dtype),
                 out: T.Buffer((b, sq, h, d), dtype)):
            T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
            body(q, k, v, out)
    else:
        @T.prim_func(private=True, s_tir=True)
        def attn(q: T.Buffer((b, sq, h, d), dtype), k: T.Buffer((b, sk, h, d), dtype),
                 v: T.Buffer((b, sk, h, d), dtype), out: T.Buffer((b, sq, h, d), dtype)):
            T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
            body(q, k, v, out)

    import tvm

    return tvm.script.from_source(attn.script())


def make_pass(kernels: Kernels):
    """The module pass that rewrites every attention `kernels` can take (see above)."""
    import numpy as np
    import tvm
    from tvm import relax

    from stages.passes.rewrite import call_pass

    def fresh():
        added: dict[object, tvm.ir.GlobalVar] = {}

        def rewrite(m, call):
            if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.attention"
                    and len(call.args) == 3 and call.attrs.causal_mask is None):
                return None
            q, k, v = call.args
            dtype = str(q.ty.dtype)
            if dtype not in kernels.dtypes or any(str(t.ty.dtype) != dtype for t in (k, v)):
                return None
            (b, sq, h, d), (_, sk, _, dk), (_, _, _, dv) = (
                [int(x) for x in t.ty.shape] for t in (q, k, v))
            scale = call.attrs.scale
            scale = 1.0 / math.sqrt(d) if scale is None else float(scale.value)
            a = kernels.plan(b, sq, sk, h, d, scale, dtype) if d == dk == dv else None
            if a is None:
                return None
            if a not in added:
                name = kernels.name(a)
                added[a] = m.builder_.add_func(
                    placeholder(a, dtype, kernels.bias).with_attr("global_symbol", name), name)
            args = [q, k, v]
            if kernels.bias:
                args.append(relax.const(np.zeros((1, 1, 1, 1), dtype=dtype)))
            return relax.call_tir(added[a], args, call.ty)

        return rewrite

    return call_pass(kernels.pass_name, fresh)
