"""Every R.nn.attention becomes one call of our attention kernel: stages/passes/attention_kernel.py
on GPUs, stages/passes/cpu_attention_kernel.py (key blocks in vector lanes) on CPUs.

Runs after to_float16, so the kernel is built for the dtype the attention really sees, and
before legalize, which would otherwise lower the op to matmul -> softmax -> matmul with the
whole score matrix in between. One PrimFunc per distinct signature (shapes, dtype, scale, mask).
A missing bias is a (1, 1, 1, 1) zero, so every kernel takes the same five buffers.
"""

ATTENTION_OPS = ("relax.nn.attention", "relax.nn.attention_bias")   # without and with a bias


def make(target):
    import numpy as np
    import tvm
    from tvm import relax

    from stages.passes import attention_kernel, cpu_attention_kernel, cpu_rule
    from stages.passes.pipeline import GPU
    from stages.passes.rewrite import call_pass

    gpu = target.kind.name in GPU
    max_threads = int(target.attrs["max_num_threads"]) if gpu else 1

    def fresh():
        kernels: dict[tuple, tvm.ir.GlobalVar] = {}

        def rewrite(mutator, call):
            if not (isinstance(call.op, tvm.ir.Op) and call.op.name in ATTENTION_OPS):
                return None
            q, k, v = call.args[:3]
            bias = call.args[3] if len(call.args) > 3 else None
            dtype = str(q.ty.dtype)
            if bias is None:
                bias = relax.const(np.zeros((1, 1, 1, 1), dtype=dtype))
            shapes = tuple(tuple(int(x) for x in t.ty.shape) for t in (q, k, v, bias))
            scale = call.attrs.scale
            scale = None if scale is None else float(scale.value)
            causal = call.attrs.causal_mask
            if causal not in (None, "TopLeft"):
                raise ValueError(f"flash_attention: causal_mask {causal!r} is not supported")
            bias_dtype = str(bias.ty.dtype)
            key = (*shapes, dtype, bias_dtype, scale, causal)
            if key not in kernels:
                if gpu:
                    func = attention_kernel.build(*shapes, dtype, scale, causal is not None,
                                                  gpu, max_threads, bias_dtype=bias_dtype)
                else:
                    func = cpu_attention_kernel.build(*shapes, dtype, scale, causal is not None,
                                                      bias_dtype=bias_dtype,
                                                      lanes=cpu_rule.register_lanes(target))
                kernels[key] = mutator.builder_.add_func(func, f"attention{len(kernels)}")
            return relax.call_tir(kernels[key], [q, k, v, bias], call.ty)

        return rewrite

    return call_pass("websd.FlashAttention", fresh)
