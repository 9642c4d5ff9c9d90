"""Weight-only int8: each quantizable weight param of `main` becomes packed bytes and scales.

A model config with `model.weights = "int8"` runs this on its UNet and text encoder (every
precision): a float weight param W (out, ...) whose rows pack into 32-bit words
(stages/runtime/quantize.py) is replaced by two params, `<W>_q8` (uint32, out x n/4: four
offset bytes a word) and `<W>_q8scale` (out, W's dtype), and W is rebuilt from them by
elementwise ops, `(((word >> 8k) & 255) - 128) * scale`, bound just before W's first use (an
embedding's `take` gathers the packed rows and expands only those), so the
planner keeps one dequantized weight alive at a time and FuseOps makes it one kernel that
reads a quarter of W's float32 bytes (half of its float16 ones). The download and the
parameter memory shrink by that much; each step re-expands the weights it uses.

NOTE: the dequantization is its own kernel, not part of the GEMM that reads W: the hand-written
GEMM kernels (simt.py, subgroup_matrix.py) read float operands. Reading the bytes in the GEMM's
own loads would save writing and reading W again each step.
"""

from __future__ import annotations

from stages.runtime.quantize import SCALE_SUFFIX, SUFFIX, quantizable


def make(target):
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="websd.Int8Weights")
    def int8_weights(mod, _ctx):
        return quantize_main(mod)

    return int8_weights


def quantize_main(mod):
    import numpy as np
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    main = mod["main"]
    num_inputs = int(main.attrs["num_input"])
    chosen = {}                    # param name -> (the param, q, s, shape, dtype, words)
    params = list(main.params[:num_inputs])
    for p in main.params[num_inputs:]:
        shape, dtype = [int(d) for d in p.ty.shape], str(p.ty.dtype)
        if dtype in ("float16", "float32") and quantizable(shape):
            words = int(np.prod(shape[1:])) // 4
            q = relax.Var(p.name + SUFFIX, relax.TensorType((shape[0], words), "uint32"))
            s = relax.Var(p.name + SCALE_SUFFIX, relax.TensorType((shape[0],), dtype))
            chosen[p.name] = (p, q, s, shape, dtype, words)
            params += [q, s]
        else:
            params.append(p)
    if not chosen:
        return mod

    shifts = relax.const(np.array([0, 8, 16, 24], np.uint32))
    low_byte = relax.const(np.uint32(255), "uint32")

    @mutator
    class Dequantize(PyExprMutator):
        def __init__(self):
            super().__init__(mod)
            self.done = set()

        def _expand(self, q, s, lead, words, tail, dtype):
            """The float values of packed rows q (*lead, words) with their scales s (*lead,),
            as an expression of shape (*lead, *tail); its steps emitted."""
            emit, op = self.builder_.emit, relax.op
            byte = emit(op.bitwise_and(op.right_shift(op.reshape(q, (*lead, words, 1)), shifts),
                                       low_byte))
            value = emit(op.astype(op.reshape(byte, (*lead, words * 4)), dtype))
            value = emit(op.multiply(op.subtract(value, relax.const(128.0, dtype)),
                                     op.reshape(s, (*lead, 1))))
            return op.reshape(value, (*lead, *tail))

        def _dequantize(self, var):
            _, q, s, shape, dtype, words = chosen[var.name]
            return self.builder_.emit(self._expand(q, s, (shape[0],), words, shape[1:], dtype),
                                      name_hint=var.name)

        def _gathered(self, binding):
            """take(W, ids, axis=0) of a chosen W -> the rows gathered packed, then expanded:
            an embedding table is never expanded whole (CLIP's token table in float32 is
            152 MB, over WebGPU's 128 MiB binding limit)."""
            value = binding.value
            if not (isinstance(value, relax.Call) and getattr(value.op, "name", "") == "relax.take"
                    and isinstance(value.args[0], relax.Var) and value.args[0].name in chosen
                    and value.args[0].same_as(chosen[value.args[0].name][0])
                    and int(value.attrs.axis) == 0):
                return None
            _, q, s, shape, dtype, words = chosen[value.args[0].name]
            ids = self.visit_expr(value.args[1])
            lead = tuple(int(d) for d in ids.ty.shape)
            rows = self.builder_.emit(relax.op.take(q, ids, axis=0))
            scales = self.builder_.emit(relax.op.take(s, ids, axis=0))
            return self._expand(rows, scales, lead, words, shape[1:], dtype)

        def visit_var_binding_(self, binding):
            gathered = self._gathered(binding)
            if gathered is not None:
                self.builder_.emit_normalized(
                    relax.VarBinding(binding.var, self.builder_.normalize(gathered)))
                return
            for var in relax.analysis.free_vars(binding.value):
                name = var.name
                if name in chosen and name not in self.done and var.same_as(chosen[name][0]):
                    self.done.add(name)
                    self.set_var_remap(var, self._dequantize(var))
            super().visit_var_binding_(binding)

    body = Dequantize().visit_expr(main.body)
    mod = mod.clone()
    mod["main"] = relax.Function(params, body, main.ret_ty, main.is_pure, main.attrs)
    return mod
