"""The two shapes of our graph-rewrite steps, each one module pass: `pattern_pass`, dataflow
patterns and their rewrites (as relax.dpl.rewrite_call does for one); `call_pass`, a function
offered every call (the steps that add kernels to the module: attention, subgroup matrices)."""


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


def call_pass(name: str, make_rewrite):
    """One module pass that offers every call of every Relax function, its arguments already
    rewritten, to a rewrite: `make_rewrite()` gives a fresh one per module (its state, such as
    the kernels it has added, is the module's), called as rewrite(mutator, call) -> the call's
    replacement, or None to keep it. mutator.builder_ adds functions and emits bindings;
    mutator.lookup_binding sees what a variable is bound to."""
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name=name)
    def apply(mod, _ctx):
        rewrite = make_rewrite()

        @relax.expr_functor.mutator
        class Rewrite(relax.PyExprMutator):
            def visit_call_(self, call):
                call = super().visit_call_(call)
                out = rewrite(self, call)
                return call if out is None else out

        rewriter = Rewrite(mod)
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return rewriter.builder_.get()

    return apply
