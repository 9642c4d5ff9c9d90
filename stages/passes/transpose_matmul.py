"""Matmuls with a transposed weight read it in place: matmul(x, permute_dims(w)) -> one NT kernel.

torch's Linear keeps its weight as (out, in) and exports `x @ w.T`; left alone, every linear
layer would copy its whole weight into a transposed buffer at every call (a kernel and a
weight-sized activation each: about 400 dispatches per SD UNet step). TVM's FuseTransposeMatmul
writes the pair as one TIR matmul that indexes w[j, k], which dlight schedules like any other.
"""


def make(target):
    from tvm import relax

    return relax.transform.FuseTransposeMatmul()
