"""Fuse elementwise and injective PrimFuncs into their producers, then merge them into one.

NOTE: AnnotateTIROpPattern must run first: FuseOps reads the pattern kind it attaches.
"""


def make(target):
    import tvm
    from tvm import relax

    return tvm.transform.Sequential([
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ], name="fuse")
