"""Drop transpose pairs that undo each other: permute_dims(permute_dims(x, a), b) with b∘a = id.

torch's attention works in (batch, heads, seq, dim) and R.nn.attention in (batch, seq, heads,
dim): diffusers transposes to the first, the importer back to the second, and the same again on
the way out. Each pair would be a kernel that copies the tensor to where it already was.
"""


def make(target):
    import tvm
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    inner = is_op("relax.permute_dims")(wildcard())
    outer = is_op("relax.permute_dims")(inner)

    def undo(expr, matches):
        first, second = matches[inner], expr
        x = first.args[0]
        rank = len(x.ty.shape)
        a = [int(i) for i in first.attrs.axes] if first.attrs.axes is not None else \
            list(range(rank))[::-1]
        b = [int(i) for i in second.attrs.axes] if second.attrs.axes is not None else \
            list(range(rank))[::-1]
        return x if [a[i] for i in b] == list(range(rank)) else expr

    @tvm.transform.module_pass(opt_level=0, name="websd.CancelTransposes")
    def cancel_transposes(mod, _ctx):
        mod = mod.clone()
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                mod[gv] = rewrite_call(outer, undo, func)
        return mod

    return cancel_transposes
