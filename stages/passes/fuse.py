"""Fuse elementwise and injective PrimFuncs into their producers, then merge them into one.

NOTE: AnnotateTIROpPattern must run first: FuseOps reads the pattern kind it attaches.

A pad stays a kernel of its own (its pattern is made opaque before FuseOps). FuseOps would
fuse it into the epilogue of the convolution before it (the VAE encoder's downsampling pads
each block's output by one row and column), where the output is larger than the
convolution's: dlight's matmul schedule cannot inline such an epilogue and refuses the kernel
on WebGPU. The pad as its own kernel is one copy of the tensor.
"""

OPAQUE = 8   # tvm's OpPatternKind kOpaque: fused with nothing


def make(target):
    import tvm
    from tvm import relax, tirx

    @tvm.transform.module_pass(opt_level=0, name="KeepPadsApart")
    def keep_pads_apart(mod, _ctx):
        out = tvm.IRModule(mod.functions, attrs=mod.attrs)
        for gv, func in mod.functions.items():
            if isinstance(func, tirx.PrimFunc) and gv.name_hint.split(".")[0].rstrip(
                    "0123456789") == "pad":
                out[gv] = func.with_attr("op_pattern", OPAQUE)
        return out

    return tvm.transform.Sequential([
        relax.transform.AnnotateTIROpPattern(),
        keep_pads_apart,
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ], name="fuse")
