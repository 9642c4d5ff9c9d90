"""Rewrite what WGSL cannot write: int8 tensors and comparisons with infinity.

torch's attention decomposition finds rows with no finite score as
max(astype(logical_not(equal(s, -inf)), int8)). WGSL has no 8-bit integers (a storage buffer
`array<i8>` is refused), no infinity literal (TVM writes `-inff`), and TVM's WGSL codegen writes
the int32 max identity as -2147483648, which WGSL cannot represent either. So, for WebGPU:
- the int8 cast becomes a float32 cast: the values come from bool (0 or 1), exact in float32,
  and the float32 max identity is a finite literal;
- equal(x, -inf) becomes less(x, lowest finite float32), and equal(x, +inf) becomes
  greater(x, largest finite float32): the same truth value for every x but NaN.
"""

FLOAT32_MAX = 3.4028234663852886e38


def make(target):
    import math

    import numpy as np
    from tvm import relax
    from tvm.relax.dpl import is_const, is_op, wildcard

    from stages.passes.rewrite import pattern_pass

    source = wildcard()
    cast = is_op("relax.astype")(source)
    value, bound = wildcard(), is_const()
    compare = is_op("relax.equal")(value, bound)

    def int8_as_float32(expr, matches):
        if expr.attrs.dtype != "int8":
            return expr
        return relax.op.astype(matches[source], "float32")

    def finite_compare(expr, matches):
        constant = matches[bound].value.numpy()
        if constant.size != 1 or not math.isinf(float(constant.reshape(-1)[0])):
            return expr
        dtype = str(constant.dtype)
        if float(constant.reshape(-1)[0]) < 0:
            return relax.op.less(matches[value], relax.const(np.array(-FLOAT32_MAX, dtype)))
        return relax.op.greater(matches[value], relax.const(np.array(FLOAT32_MAX, dtype)))

    return pattern_pass("WGSLLiterals", (cast, int8_as_float32), (compare, finite_compare))
