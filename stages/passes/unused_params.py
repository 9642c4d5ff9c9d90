"""Drop the params `main` never reads, so they are neither downloaded nor held on the GPU.

torch.export lifts every parameter of the module it exports, used or not: the VAE's two
components export one AutoencoderKL, so the decoder took the encoder's weights as params too
(and the encoder the decoder's): 167 MB of float16 shards each at full size where each needs
about half. emit writes exactly the params `main` takes (plan.json), so they go from the
artifact with them.
"""


def make(target):
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name="websd.DropUnusedParams")
    def drop_unused_params(mod, _ctx):
        main = mod["main"]
        num_inputs = int(main.attrs["num_input"])
        used = {v.name for v in relax.analysis.free_vars(main.body)}
        params = list(main.params[:num_inputs]) + [p for p in main.params[num_inputs:]
                                                   if p.name in used]
        if len(params) == len(main.params):
            return mod
        mod = mod.clone()
        mod["main"] = relax.Function(params, main.body, main.ret_ty, main.is_pure, main.attrs)
        return mod

    return drop_unused_params
