"""Evaluate at build time what depends on constants only (the UNet's timestep frequencies)."""


def make(target):
    from tvm import relax

    return relax.transform.FoldConstant()
