"""Gather rows before casting them: take(astype(table, f32), ids) -> astype(take(table, ids), f32).

ToMixedPrecision keeps embedding lookups in float32, so the float16 text encoder cast its whole
token table (49408 x 768: a 152 MB float32 copy, over WebGPU's 128 MiB binding limit) at every
call to read 77 rows of it. Casting after the gather gives the same values.
"""


def make(target):
    import tvm
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    table, ids = wildcard(), wildcard()
    cast = is_op("relax.astype")(table)
    gather = is_op("relax.take")(cast, ids)

    def swap(expr, matches):
        return relax.op.astype(relax.op.take(matches[table], matches[ids], axis=expr.attrs.axis),
                               matches[cast].attrs.dtype)

    @tvm.transform.module_pass(opt_level=0, name="websd.TakeBeforeCast")
    def take_before_cast(mod, _ctx):
        mod = mod.clone()
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                mod[gv] = rewrite_call(gather, swap, func)
        return mod

    return take_before_cast
