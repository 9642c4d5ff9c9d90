"""On CPUs a weight that `main` reads only transposed is stored as panels, not copied per call.

torch's Linear keeps its weight W as (out, in) and exports `x @ permute_dims(W)`. GPUs read W in
place (transpose_matmul.py); the CPU's tiled matmul (cpu_rule.py) runs its lanes along the
output columns, so each call copied every linear layer's weight into a transposed buffer first
(115 of the 390 ms of the SD v1.5 text encoder), and a tile then read W.T a whole row apart per
step. The layout depends on nothing but the weight, so emit makes it once: a 2-d param W whose
every use is permute_dims(W) becomes the param `<W>_panels<L>` (stages/runtime/weight_panels.py),
W.T in contiguous strips as wide as one vector register of the target (L lanes), and each of
those permute_dims becomes the panels read back as W.T (a permute and a reshape, which the
matmul's kernel inlines: its tiles then read one strip each, in order).
"""

from __future__ import annotations

from stages.runtime import weight_panels


def make(target):
    import tvm

    from stages.passes import cpu_rule

    lanes = cpu_rule.register_lanes(target)

    @tvm.transform.module_pass(opt_level=0, name="websd.WeightPanels")
    def stored_as_panels(mod, _ctx):
        return store_panels(mod, lanes)

    return stored_as_panels


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


def _matmul_by(value, transposes: dict):
    """The param whose transpose `value` multiplies by (matmul(x, permute_dims(W)), x of W's
    dtype, no other output dtype), or None."""
    from tvm import relax

    if not (isinstance(value, relax.Call) and getattr(value.op, "name", "") == "relax.matmul"):
        return None
    x, b = value.args
    if not (isinstance(b, relax.Var) and b in transposes):
        return None
    out = str(value.attrs.out_dtype)
    if out not in ("", "void", str(b.ty.dtype)) or str(x.ty.dtype) != str(b.ty.dtype):
        return None
    return transposes[b]


def panel_matmul(x, panels):
    """x @ W.T with W.T read from its panels: (..., k) x (n / L, k, L) -> (..., n)."""
    from tvm import te

    *lead, k = x.shape
    count, _, lanes = panels.shape
    r = te.reduce_axis((0, k), "k")
    return te.compute((*lead, count * lanes), lambda *i: te.sum(
        x[(*i[:-1], r)] * panels[i[-1] // lanes, r, i[-1] % lanes], axis=r), name="matmul")


def store_panels(mod, lanes: int):
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    main = mod["main"]
    num_inputs = int(main.attrs["num_input"])
    params = {p.name: p for p in main.params[num_inputs:]}
    bindings = [b for block in main.body.blocks for b in block.bindings]
    transposes = {b.var: b.value.args[0].name for b in bindings
                  if _is_transpose_of(b.value, params)}
    # a weight qualifies when it is read only through its transposes, and those only as the
    # right operand of matmuls
    other = set()
    for b in bindings:
        if b.var in transposes:
            continue
        if _matmul_by(b.value, transposes) is not None:
            other |= {v.name for v in relax.analysis.free_vars(b.value.args[0])}
            continue
        other |= {v.name for v in relax.analysis.free_vars(b.value)}
        other |= {transposes[v] for v in relax.analysis.free_vars(b.value) if v in transposes}
    other |= {v.name for v in relax.analysis.free_vars(main.body.body)}
    chosen = {}
    for name in sorted(set(transposes.values()) - other):
        w = params[name]
        rows, cols = (int(d) for d in w.ty.shape)
        width = lanes if rows % lanes == 0 else rows   # one panel: W.T itself
        chosen[name] = relax.Var(weight_panels.name(name, width),
                                 relax.TensorType((rows // width, cols, width), w.ty.dtype))
    if not chosen:
        return mod

    @mutator
    class Store(PyExprMutator):
        def visit_var_binding_(self, binding):
            if binding.var in transposes and transposes[binding.var] in chosen:
                return   # read by the matmuls below only
            name = _matmul_by(binding.value, transposes)
            if name in chosen:
                x = self.visit_expr(binding.value.args[0])
                out = self.builder_.emit_te(panel_matmul, x, chosen[name],
                                            primfunc_name_hint="matmul_panels")
                if not isinstance(binding.var, relax.DataflowVar):   # read after the block
                    out = self.builder_.emit_output(out)
                self.set_var_remap(binding.var, out)
                return
            super().visit_var_binding_(binding)

    store = Store(mod)
    body = store.visit_expr(main.body)
    new_params = list(main.params[:num_inputs]) + [chosen.get(p.name, p)
                                                    for p in main.params[num_inputs:]]
    mod = store.builder_.get()   # with the matmuls' PrimFuncs
    mod["main"] = relax.Function(new_params, body, main.ret_ty, main.is_pure, main.attrs)
    return mod
