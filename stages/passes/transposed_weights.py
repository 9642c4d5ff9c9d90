"""On CPUs a weight that `main` reads only transposed is stored transposed, not copied per call.

torch's Linear keeps its weight W as (out, in) and exports `x @ permute_dims(W)`. GPUs read W in
place (transpose_matmul.py); the CPU's tiled matmul reads (in, out) rows (cpu_rule.py), so each
call copied every linear layer's weight into a transposed buffer first: 115 of the 390 ms of
the SD v1.5 text encoder. The copy depends on nothing but the weight, so it is made once, by
emit: a 2-d param W whose every use is permute_dims(W) becomes the param `<W>_transposed` of
the transposed shape (stages/runtime/transposed_params.py), and those permute_dims go.
"""

from __future__ import annotations

from stages.runtime.transposed_params import SUFFIX


def make(target):
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="websd.TransposedWeights")
    def transposed_weights(mod, _ctx):
        return store_transposed(mod)

    return transposed_weights


def _is_transpose_of(value, params: dict) -> bool:
    """Is `value` permute_dims(W) of a 2-d param W, swapping its two axes?"""
    from tvm import relax

    if not (isinstance(value, relax.Call) and getattr(value.op, "name", "") ==
            "relax.permute_dims" and isinstance(value.args[0], relax.Var)):
        return False
    w = value.args[0]
    if w.name not in params or not w.same_as(params[w.name]) or len(w.ty.shape) != 2:
        return False
    return value.attrs.axes is None or [int(a) for a in value.attrs.axes] == [1, 0]


def store_transposed(mod):
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    main = mod["main"]
    num_inputs = int(main.attrs["num_input"])
    params = {p.name: p for p in main.params[num_inputs:]}
    transposed, other = set(), set()      # params read transposed; read any other way
    for block in main.body.blocks:
        for binding in block.bindings:
            if _is_transpose_of(binding.value, params):
                transposed.add(binding.value.args[0].name)
            else:
                other |= {v.name for v in relax.analysis.free_vars(binding.value)}
    other |= {v.name for v in relax.analysis.free_vars(main.body.body)}
    chosen = {}
    for name in sorted(transposed - other):
        w = params[name]
        rows, cols = w.ty.shape
        chosen[name] = relax.Var(name + SUFFIX, relax.TensorType((cols, rows), w.ty.dtype))
    if not chosen:
        return mod

    @mutator
    class Store(PyExprMutator):
        def visit_var_binding_(self, binding):
            if _is_transpose_of(binding.value, params) and binding.value.args[0].name in chosen:
                self.set_var_remap(binding.var, chosen[binding.value.args[0].name])
                return
            super().visit_var_binding_(binding)

    body = Store(mod).visit_expr(main.body)
    new_params = list(main.params[:num_inputs]) + [chosen.get(p.name, p)
                                                    for p in main.params[num_inputs:]]
    mod = mod.clone()
    mod["main"] = relax.Function(new_params, body, main.ret_ty, main.is_pure, main.attrs)
    return mod
