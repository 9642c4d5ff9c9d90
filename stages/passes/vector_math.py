"""float32 exp, sigmoid and erf in llvm kernels as arithmetic that LLVM keeps in vector lanes.

LLVM has no vector exp or erf: a vectorized `exp` (and `sigmoid`, 1 / (1 + exp(-x))) or `erf`
becomes one call of the C library's expf or erff per lane, some 20 cycles each. The SD VAE
decoder's GroupNorm + SiLU kernel at 512 x 512 took 161 ms on it (AVX2, 2 threads), 19 ms
with this pass and cpu_rule's inlining; the UNet's GEGLU (erf) 62 ms, 48 ms with the inlining
alone, 9 ms with this pass too. Here every float32 exp, sigmoid and erf in a kernel is rewritten:

- exp(x) = 2**n * e**r with n = round(x / ln 2) and r = x - n ln 2 (ln 2 in two parts, so r
  keeps its bits), e**r by a degree-7 polynomial on |r| <= ln 2 / 2, 2**n by its exponent
  bits. Over [-87, 88] its largest relative error is 8.1e-8 (float32's rounding: 6e-8).
  Outside it clamps: exp of x < -87 is exp(-87) ~ 1.6e-38 (not smaller, not 0) and of x > 88
  is exp(88) ~ 1.7e38 (not inf); a sigmoid, a softmax (exp(x - max) <= 1) and a SiLU do not
  tell the difference.
- erf(x) = 1 - t P(t) e**(-x**2), t = 1 / (1 + p |x|), odd in x (Abramowitz and Stegun
  7.1.26): largest absolute error 5.3e-7 in float32; a GELU's 4.6e-7, rel-L2 4.9e-8 over
  [-6, 6].
The attention kernel has its own base-2 exp (cpu_attention_kernel.exp2).
"""

from __future__ import annotations

LOG2E = 1.4426950408889634
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4   # ln 2 = LN2_HI + LN2_LO, LN2_HI short
# e**r - 1 - r = r**2 * P(r) on |r| <= ln 2 / 2 (P's coefficients, highest power first)
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
            1.6666665459e-1, 5.0000001201e-1)
X_MIN, X_MAX = -87.0, 88.0   # 2**n stays a normal float32: n in [-126, 127]


def exp(x):
    """e**x for a float32 expression, in operations LLVM keeps in lanes."""
    from tvm.script import tirx as T

    x = T.min(T.max(x, T.float32(X_MIN)), T.float32(X_MAX))
    n = T.floor(x * T.float32(LOG2E) + T.float32(0.5))
    r = x - n * T.float32(LN2_HI) - n * T.float32(LN2_LO)
    p = T.float32(EXP_POLY[0])
    for c in EXP_POLY[1:]:
        p = p * r + T.float32(c)
    p = p * r * r + r + T.float32(1.0)
    return p * pow2(n)


def pow2(n):
    """2**n for a float32 expression n holding a whole number in [-126, 127], by its exponent
    bits."""
    from tvm import tirx
    from tvm.script import tirx as T

    return T.reinterpret("float32", tirx.shift_left(T.cast(n, "int32") + 127, 23))


# erf's t = 1 / (1 + ERF_P |x|) and P(t)'s coefficients, highest power first
ERF_P = 0.3275911
ERF_POLY = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def erf(x):
    """erf(x) for a float32 expression, in operations LLVM keeps in lanes."""
    from tvm.script import tirx as T

    a = T.abs(x)
    t = T.float32(1.0) / (T.float32(1.0) + T.float32(ERF_P) * a)
    p = T.float32(ERF_POLY[0])
    for c in ERF_POLY[1:]:
        p = p * t + T.float32(c)
    y = T.float32(1.0) - p * t * exp(-a * a)
    return T.Select(x < T.float32(0.0), -y, y)


def rewrite(func):
    """func with every float32 exp, sigmoid and erf call replaced."""
    import tvm_ffi
    from tvm import ir
    from tvm.script import tirx as T

    ops = {ir.Op.get("tirx.exp"): exp, ir.Op.get("tirx.erf"): erf,
           ir.Op.get("tirx.sigmoid"): lambda x: T.float32(1.0) / (T.float32(1.0) + exp(-x))}

    def replace(call):
        if str(call.ty) != "float32":
            return call
        for op, written in ops.items():
            if call.op.same_as(op):
                return written(*call.args)
        return call

    return tvm_ffi.structural_map(func, (ir.Call, replace), order="post")


def make(target):
    from tvm import tirx

    @tirx.transform.prim_func_pass(opt_level=0, name="websd.VectorMath")
    def vector_math(func, _mod, _ctx):
        return rewrite(func)

    return vector_math
