"""Default CPU schedules (dlight) for every llvm kernel that has no tuning record.

Softmax-like and layer-norm-like kernels get dlight's CPU reduction rule, GEMVs its GEMV rule,
convolutions and matmuls our tiled rule, and every other kernel parallel, vectorized loops
(stages/passes/cpu_rule.py says how and why). Kernels already scheduled (by a tuning record, or
written with their own loops, as attention) are left alone.
"""


def rules():
    """The rules in the order they are tried; the first that schedules a kernel wins."""
    from tvm.s_tir import dlight as dl

    from stages.passes import cpu_rule

    tiled, spatial = cpu_rule.make_rules()
    return [tiled, dl.cpu.GEMV(), dl.cpu.Reduction(), spatial]


def make(target):
    from tvm.s_tir import dlight as dl

    return dl.ApplyDefaultSchedule(*rules())


def schedule_of(func, target):
    """The traced schedule the build gives this PrimFunc on this target, or None where no rule
    applies: what `doit tune` measures as the default that a record must beat."""
    for rule in rules():
        sch = rule.apply(func, target, False)
        if isinstance(sch, list):
            sch = sch[0] if sch else None
        if sch is not None:
            return sch
    return None
