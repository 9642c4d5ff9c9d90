"""Drop multiplications and divisions by a constant 1.

diffusers' ResNet blocks end with `(x + h) / output_scale_factor` and its attention blocks with
`/ rescale_output_factor`, both 1.0 in SD: an elementwise op per block that changes nothing.
The UNet runs them at every denoising step; the VAE decoder's few run once per image.
"""


def make(target):
    import numpy as np
    import tvm
    import tvm_ffi
    from tvm import relax
    from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

    x, one = wildcard(), is_const()
    scaled = is_op("relax.divide")(x, one) | is_op("relax.multiply")(x, one)

    def drop(expr, matches):
        # NOTE: only when x already has the result's shape and dtype (no broadcast, no promotion)
        if not tvm_ffi.structural_equal(expr.ty, matches[x].ty):
            return expr
        return matches[x] if np.all(matches[one].value.numpy() == 1) else expr

    @tvm.transform.module_pass(opt_level=0, name="websd.DropUnitScale")
    def drop_unit_scale(mod, _ctx):
        mod = mod.clone()
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                mod[gv] = rewrite_call(scaled, drop, func)
        return mod

    return drop_unit_scale
