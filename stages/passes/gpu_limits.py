"""Check every scheduled kernel against the target's GPU limits; fail the build naming both.

A kernel over a limit would compile and then fail at run time on the device (a pipeline
creation error, or a lost device), so the check runs at build time, after the default
schedules: threads per workgroup against max_num_threads (maxComputeInvocationsPerWorkgroup),
workgroup (shared) memory against max_shared_memory_per_block
(maxComputeWorkgroupStorageSize), and a kernel with no thread binding at all (it would not
compile for a GPU). The module is returned unchanged. Buffer sizes are checked in `plan`,
which knows the storage buffers that get bound.
"""

from __future__ import annotations

from stages.engine.errors import BuildError
from stages.passes import pipeline

CHILDREN = ("body", "block", "init", "then_case", "else_case")


def kernel_usage(func) -> dict:
    """{"threads": invocations per workgroup, "shared_bytes": workgroup memory, "bound": bool}."""
    import tvm

    extents: dict[str, int] = {}
    shared = 0
    bound = False

    def visit(node):
        nonlocal shared, bound
        if node is None:
            return
        if isinstance(node, tvm.tirx.SeqStmt):
            for s in node.seq:
                visit(s)
            return
        if isinstance(node, tvm.tirx.For) and node.kind == tvm.tirx.ForKind.THREAD_BINDING:
            tag = node.thread_binding.thread_tag
            bound = bound or tag.startswith(("threadIdx", "blockIdx"))
            if tag.startswith("threadIdx"):
                extents[tag] = max(extents.get(tag, 1), int(node.extent))
        buffers = list(getattr(node, "alloc_buffers", None) or ())
        if isinstance(node, tvm.tirx.AllocBuffer):    # an allocation written in a block body
            buffers.append(node.buffer)
        for buf in buffers:
            if buf.scope().startswith("shared"):
                n = 1
                for d in buf.shape:
                    n *= int(d)
                shared += n * tvm.runtime.DataType(buf.dtype).bits // 8
        for name in CHILDREN:
            child = getattr(node, name, None)
            if isinstance(child, (tvm.tirx.Stmt, tvm.s_tir.stmt.SBlock)):
                visit(child)

    visit(func.body)
    threads = 1
    for extent in extents.values():
        threads *= extent
    return {"threads": threads, "shared_bytes": shared, "bound": bound}


def check(mod, target) -> None:
    import tvm

    max_threads = int(target.attrs["max_num_threads"])
    max_shared = int(target.attrs["max_shared_memory_per_block"])
    kernels = tvm.IRModule({gv: f for gv, f in mod.functions.items()
                            if isinstance(f, tvm.tirx.PrimFunc)})
    with target:
        kernels = tvm.transform.Sequential(
            [getattr(tvm.s_tir.transform, p)() for p in pipeline.LIMITS_COMPACT])(kernels)
    for gv, func in kernels.functions.items():
        name, use = gv.name_hint, kernel_usage(func)
        where = f"kernel {name}"
        if not use["bound"]:
            raise BuildError(f"{where} has no GPU schedule (no thread binding); fix: add a "
                             f"dlight rule in stages/passes/gpu_default_schedule.py or tune it")
        if use["threads"] > max_threads:
            raise BuildError(f"{where} uses {use['threads']} threads per workgroup, over "
                             f"max_num_threads = {max_threads} (the target config); fix: "
                             f"raise it only for GPUs that grant it, or re-schedule the kernel")
        if use["shared_bytes"] > max_shared:
            raise BuildError(f"{where} uses {use['shared_bytes']} bytes of workgroup memory, "
                             f"over max_shared_memory_per_block = {max_shared} (the target "
                             f"config); fix: raise it only for GPUs that grant it, or "
                             f"re-schedule the kernel")


def make(target):
    """A plain function, not a tvm Pass: its BuildError must reach the build as itself."""

    def gpu_limits(mod):
        check(mod, target)
        return mod

    return gpu_limits
