"""Drop multiplications and divisions by a constant 1.

diffusers' ResNet blocks end with `(x + h) / output_scale_factor` and its attention blocks with
`/ rescale_output_factor`, both 1.0 in SD: an elementwise op per block that changes nothing.
The UNet runs them at every denoising step; the VAE decoder's few run once per image.
"""


def make(target):
    import numpy as np
    import tvm_ffi
    from tvm.relax.dpl import is_const, is_op, wildcard

    from stages.passes.rewrite import pattern_pass

    x, one = wildcard(), is_const()
    scaled = is_op("relax.divide")(x, one) | is_op("relax.multiply")(x, one)

    def drop(expr, matches):
        # NOTE: only when x already has the result's shape and dtype (no broadcast, no promotion)
        if not tvm_ffi.structural_equal(expr.ty, matches[x].ty):
            return expr
        return matches[x] if np.all(matches[one].value.numpy() == 1) else expr

    return pattern_pass("websd.DropUnitScale", (scaled, drop))
