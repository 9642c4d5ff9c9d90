"""The float16 variant of a component: weights and compute in float16, float32 at the boundary.

TVM's torch importer types every conv/matmul/linear output as float32, so a module exported
from torch in float16 does not import; the float16 graph is made here from the float32 one.
ToMixedPrecision runs convolutions and matmuls on float16 operands with float32 accumulation
and keeps numerically fragile ops (softmax, norms) in float32 where TVM's op policy says so.
Every weight param of `main` becomes a float16 param (the emit stage writes float16 shards to
match), while the inputs and the output stay float32, so callers feed every variant alike.

NOTE: TVM 0.27's ToMixedPrecision rebuilds an attention with a bias (CLIP's causal mask) without
the bias: the float16 text encoder then attended to every token (rel-L2 0.89). The bias is put
back here, cast to the attention's dtype, on the binding of the same name.
"""


def _bindings(func):
    for block in func.body.blocks:
        yield from block.bindings


def _reattach_biases(before, after):
    from tvm import relax

    def is_attention(value, op):
        return isinstance(value, relax.Call) and getattr(value.op, "name", None) == op

    biases = {b.var.name: b.value.args[3] for b in _bindings(before["main"])
              if is_attention(b.value, "relax.nn.attention_bias")}
    if not biases:
        return after
    main = after["main"]
    # NOTE: ToMixedPrecision's new bindings may reuse a name (SD's text encoder: a 2-D cast
    # named like the 4-D mask): of the vars with the bias's name, take the one of its shape
    by_name: dict[str, list] = {}
    for var in [*main.params, *(b.var for b in _bindings(main))]:
        by_name.setdefault(var.name, []).append(var)

    def same(bias):
        shape = [int(d) for d in bias.ty.shape]
        hits = [v for v in by_name.get(bias.name, []) if [int(d) for d in v.ty.shape] == shape]
        if not hits:
            raise ValueError(f"to_float16: the attention bias {bias.name} {shape} is gone after "
                             f"ToMixedPrecision")
        return hits[0]

    blocks = []
    for block in main.body.blocks:
        bindings = []
        for b in block.bindings:
            v = b.value
            if b.var.name in biases and is_attention(v, "relax.nn.attention") and len(v.args) == 3:
                bias = biases[b.var.name]
                bias = same(bias) if isinstance(bias, relax.Var) else bias
                q = v.args[0]
                if str(bias.ty.dtype) != str(q.ty.dtype):
                    bias = relax.op.astype(bias, q.ty.dtype)
                v = relax.op.nn.attention(*v.args, bias=bias, scale=v.attrs.scale,
                                          causal_mask=v.attrs.causal_mask,
                                          window_size=v.attrs.window_size)
                b = relax.VarBinding(b.var, v)
            bindings.append(b)
        blocks.append(type(block)(bindings))
    after = after.clone()
    after["main"] = relax.Function(main.params, relax.SeqExpr(blocks, main.body.body),
                                   main.ret_ty, main.is_pure, main.attrs)
    return relax.transform.Normalize()(after)


def make(target):
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name="websd.ToFloat16")
    def to_float16(mod, _ctx):
        main = mod["main"]
        num_inputs = int(main.attrs["num_input"])
        weights = [p.name for p in main.params[num_inputs:] if str(p.ty.dtype) == "float32"]
        mixed = relax.transform.ToMixedPrecision(out_dtype="float32",
                                                 fp16_input_names=weights)(mod)
        return _reattach_biases(mod, mixed)

    return to_float16
