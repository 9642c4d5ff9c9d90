"""Default GPU schedules (dlight) for every kernel that has no tuning record.

Matmul-shaped kernels get tiled matmul schedules, reductions (softmax, group/layer norm) get
cross-thread reductions, and everything else the fallback (one element per thread). Kernels
already scheduled, by a tuning record, are left alone. The schedules read the target's
max_num_threads and max_shared_memory_per_block, so they stay within the WebGPU limits the
target config names.
"""


def make(target):
    from tvm.s_tir import dlight as dl

    return dl.ApplyDefaultSchedule(
        dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(),
        dl.gpu.Fallback())
