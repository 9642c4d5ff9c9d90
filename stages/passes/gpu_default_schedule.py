"""Default GPU schedules (dlight) for every kernel that has no tuning record.

GroupNorm kernels get our rule (stages/passes/group_norm_rule.py: one workgroup per batch item
and group), matmul-shaped kernels tiled matmul schedules (stages/passes/matmul_rule.py: dlight's,
with bigger tiles for large outputs on WebGPU), other reductions (softmax, layer norm)
cross-thread reductions, and everything else the fallback (one element per thread). Kernels
already scheduled, by a tuning record, are left alone. The schedules read the target's
max_num_threads and max_shared_memory_per_block, so they stay within the WebGPU limits the
target config names.
"""


def make(target):
    from tvm.s_tir import dlight as dl

    from stages.passes import group_norm_rule, matmul_rule

    return dl.ApplyDefaultSchedule(
        group_norm_rule.make_rule(), matmul_rule.make_rule(), dl.gpu.GEMV(), dl.gpu.Reduction(),
        dl.gpu.GeneralReduction(), dl.gpu.Fallback())
