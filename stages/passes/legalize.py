"""Lower high-level Relax ops (conv2d, group_norm, softmax, ...) to TensorIR PrimFuncs."""


def make(target):
    from tvm import relax

    return relax.transform.LegalizeOps()
