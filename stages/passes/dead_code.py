"""Drop bindings and PrimFuncs that nothing uses any more after the rewrites above."""


def make(target):
    from tvm import relax

    return relax.transform.DeadCodeElimination()
