"""A dlight rule for GroupNorm kernels: one workgroup per (batch, group), not one per batch item.

GroupNorm reduces over (channels of the group, height, width) for each (batch, group), then
writes (batch, channel, height, width), usually with SiLU fused after it. dlight's
GeneralReduction maps workgroups to the spatial axes the reduction and the output share: here
only the batch, because the output's channel axis is not the reduction's group axis. At full
size that is 2 workgroups for the whole UNet GroupNorm, and the profile of one UNet step on
the H200 showed GroupNorm kernels taking 291 of 445 ms (bench/results/h200/tvm_profile.json).
This rule splits the output's channel axis into (group, channel in group), so that workgroup b
owns batch b // G, group b % G: it reduces its group's elements across its threads (in
workgroup memory) and writes the same group's outputs.
It matches a kernel of exactly two blocks once the injective ones are inlined: a reduction with
leading spatial axes (batch, group), or (group) where the batch is 1, and trailing reduction
axes, and an injective output block (batch, channels, ...) whose channel count is a multiple
of the group count.
"""

from __future__ import annotations


def make_rule():
    """The rule as a dlight GPUScheduleRule instance (tvm is imported here, not at load)."""
    from tvm import s_tir, tirx
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import try_inline_contiguous_spatial
    from tvm.s_tir.dlight.gpu.base import GPUScheduleRule

    def extents(info) -> list[int] | None:
        out = []
        for it in info.iters:
            if not isinstance(it.dom, (int, tirx.IntImm)):
                return None   # a symbolic extent
            out.append(int(it.dom))
        return out

    class GroupNorm(GPUScheduleRule):
        def apply(self, func, target, _tunable):
            if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
                return None
            sch = s_tir.Schedule(func)
            infos = normalize_prim_func(sch)
            infos = try_inline_contiguous_spatial(sch, infos) if infos else None
            if not infos or len(infos) != 2:
                return None
            red, out = infos
            kind = red.dom_kind()
            lead = len(kind) - len(kind.lstrip("S"))   # (batch, group), or (group) for batch 1
            if lead not in (1, 2) or not kind[lead:] or set(kind[lead:]) != {"R"}:
                return None
            if not out.is_injective() or out.dom_kind() != "S" * len(out.iters):
                return None
            red_ext, out_ext = extents(red), extents(out)
            if red_ext is None or out_ext is None or len(out_ext) < lead + 1:
                return None
            groups, channels = red_ext[lead - 1], out_ext[lead - 1]
            # groups == channels is a per-channel norm (layer norm, softmax): GeneralReduction's
            if red_ext[:lead - 1] != out_ext[:lead - 1] or not 2 <= groups < channels \
                    or channels % groups:
                return None
            threads = min(256, int(target.attrs.get("max_num_threads", 256)))

            # (batch, channel, ...) -> (batch, group, channel in group, ...): the block's reads of
            # the reduction then simplify to [batch, group], so compute_at below gives each
            # workgroup exactly its own group's statistics
            per_group = channels // groups
            sch.transform_block_layout(out.block_rv, tirx.IndexMap.from_func(
                lambda *i: [*i[:lead - 1], i[lead - 1] // per_group, i[lead - 1] % per_group,
                            *i[lead:]],
                ndim=len(out_ext)))
            # ... once the group's index is simplified against the block's iteration bounds
            red_name, out_name = sch.get(red.block_rv).name_hint, sch.get(out.block_rv).name_hint
            sch = s_tir.Schedule(s_tir.transform.StmtSimplify()(sch.mod))
            red_rv, out_rv = sch.get_sblock(red_name), sch.get_sblock(out_name)
            loops = sch.get_loops(out_rv)
            bx = sch.fuse(*loops[:lead])
            cg, *rest = loops[lead:]
            inner = sch.fuse(cg, *rest)
            _, tx = sch.split(inner, [None, threads])   # consecutive threads, consecutive elements
            sch.bind(bx, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")

            for i, _ in enumerate(sch.get(red_rv).writes):
                sch.set_scope(red_rv, buffer_index=i, storage_scope="shared")
            sch.compute_at(red_rv, bx, preserve_unit_loops=True)
            r_loop = sch.fuse(*sch.get_loops(red_rv)[-(len(kind) - lead):])
            _, rtx = sch.split(r_loop, [None, threads])   # coalesced reads, then across threads
            sch.bind(rtx, "threadIdx.x")
            return sch

    return GroupNorm()
