"""Drop transpose pairs that undo each other: permute_dims(permute_dims(x, a), b) with b∘a = id.

torch's attention works in (batch, heads, seq, dim) and R.nn.attention in (batch, seq, heads,
dim): diffusers transposes to the first, the importer back to the second, and the same again on
the way out. Each pair would be a kernel that copies the tensor to where it already was.
"""


def make(target):
    from tvm.relax.dpl import is_op, wildcard

    from stages.passes.rewrite import pattern_pass

    inner = is_op("relax.permute_dims")(wildcard())
    outer = is_op("relax.permute_dims")(inner)

    def axes(call, rank):
        return [int(i) for i in call.attrs.axes] if call.attrs.axes is not None \
            else list(range(rank))[::-1]

    def undo(expr, matches):
        x = matches[inner].args[0]
        rank = len(x.ty.shape)
        a, b = axes(matches[inner], rank), axes(expr, rank)
        return x if [a[i] for i in b] == list(range(rank)) else expr

    return pattern_pass("websd.CancelTransposes", (outer, undo))
