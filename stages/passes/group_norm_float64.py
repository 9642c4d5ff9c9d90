"""GroupNorm in float64 where its sums run one value after another (the llvm target).

A group of a full-size VAE decoder's GroupNorm holds about a million values (32 groups of 128
channels at 512x512). On llvm, TVM's GroupNorm sums them into one float32 accumulator in turn,
and the rounding of that sum reaches 1e-3 of the image (a 768-pixel model's vae_decoder
verified at rel-L2 1.0e-3 against PyTorch, whose float32 is 1.5e-6 from float64). In float64
the same loop is exact enough; the cast in and out costs two passes over the activation, small
beside the convolutions around it. GPU targets reduce as a tree (group_norm_rule.py) and keep
float32.
"""


def make(target):
    from tvm import relax

    from stages.passes.rewrite import call_pass

    op = relax.op

    def in_float64(mutator, call):
        a = call.attrs
        if getattr(call.op, "name", "") != "relax.nn.group_norm" \
                or str(call.args[0].ty.dtype) != "float32" or int(a.channel_axis) != 1 \
                or [int(x) for x in a.axes] != list(range(2, len(call.args[0].ty.shape))):
            return None
        x, gamma, beta = call.args
        shape = [int(d) for d in x.ty.shape]          # N, C, spatial...
        n, c, groups = shape[0], shape[1], int(a.num_groups)
        axes = list(range(2, len(shape) + 1))
        # NOTE: as TOPI's GroupNorm: two passes (mean, then the mean square around it)
        xg = op.reshape(op.astype(x, "float64"), [n, groups, c // groups, *shape[2:]])
        centred = op.subtract(xg, op.mean(xg, axis=axes, keepdims=True))
        var = op.mean(op.multiply(centred, centred), axis=axes, keepdims=True)
        y = op.divide(centred, op.sqrt(op.add(var, relax.const(float(a.epsilon), "float64"))))
        y = op.astype(op.reshape(y, shape), "float32")
        per_channel = [1, c] + [1] * (len(shape) - 2)
        if a.scale:
            y = op.multiply(y, op.reshape(gamma, per_channel))
        if a.center:
            y = op.add(y, op.reshape(beta, per_channel))
        return y

    return call_pass("websd.GroupNormFloat64", lambda: in_float64)
