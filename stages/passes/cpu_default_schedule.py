"""Default CPU schedules (dlight) for every llvm kernel that has no tuning record.

Softmax-like and layer-norm-like kernels get dlight's CPU reduction rule, GEMVs its GEMV rule,
convolutions and matmuls our tiled rule, and every other kernel parallel, vectorized loops
(stages/passes/cpu_rule.py says how and why). Kernels already scheduled (by a tuning record, or
written with their own loops, as attention) are left alone.
"""


def make(target):
    from tvm.s_tir import dlight as dl

    from stages.passes import cpu_rule

    tiled, spatial = cpu_rule.make_rules()
    return dl.ApplyDefaultSchedule(tiled, dl.cpu.GEMV(), dl.cpu.Reduction(), spatial)
