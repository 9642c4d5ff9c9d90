"""Gather rows before casting them: take(astype(table, f32), ids) -> astype(take(table, ids), f32).

ToMixedPrecision keeps embedding lookups in float32, so the float16 text encoder cast its whole
token table (49408 x 768: a 152 MB float32 copy, over WebGPU's 128 MiB binding limit) at every
call to read 77 rows of it. Casting after the gather gives the same values.
"""


def make(target):
    from tvm import relax
    from tvm.relax.dpl import is_op, wildcard

    from stages.passes.rewrite import pattern_pass

    table, ids = wildcard(), wildcard()
    cast = is_op("relax.astype")(table)
    gather = is_op("relax.take")(cast, ids)

    def swap(expr, matches):
        return relax.op.astype(relax.op.take(matches[table], matches[ids], axis=expr.attrs.axis),
                               matches[cast].attrs.dtype)

    return pattern_pass("websd.TakeBeforeCast", (gather, swap))
