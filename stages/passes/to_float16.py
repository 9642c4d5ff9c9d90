"""The float16 variant of a component: weights and compute in float16, float32 at the boundary.

TVM's torch importer types every conv/matmul/linear output as float32, so a module exported
from torch in float16 does not import; the float16 graph is made here from the float32 one.
ToMixedPrecision runs convolutions and matmuls on float16 operands with float32 accumulation
and keeps numerically fragile ops (softmax, norms) in float32 where TVM's op policy says so.
Every weight param of `main` becomes a float16 param (the emit stage writes float16 shards to
match), while the inputs and the output stay float32, so callers feed every variant alike.
"""


def make(target):
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name="websd.ToFloat16")
    def to_float16(mod, _ctx):
        main = mod["main"]
        num_inputs = int(main.attrs["num_input"])
        weights = [p.name for p in main.params[num_inputs:] if str(p.ty.dtype) == "float32"]
        return relax.transform.ToMixedPrecision(out_dtype="float32",
                                                fp16_input_names=weights)(mod)

    return to_float16
