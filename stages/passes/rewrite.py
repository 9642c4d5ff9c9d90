"""One module pass from dataflow-pattern rules: each (pattern, rewrite) in turn on every Relax
function, as relax.dpl.rewrite_call does for one. The graph-rewrite steps are made of it."""


def pattern_pass(name: str, *rules):
    import tvm
    from tvm import relax
    from tvm.relax.dpl import rewrite_call

    @tvm.transform.module_pass(opt_level=0, name=name)
    def apply(mod, _ctx):
        mod = mod.clone()
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                for pattern, rewrite in rules:
                    func = rewrite_call(pattern, rewrite, func)
                mod[gv] = func
        return mod

    return apply
