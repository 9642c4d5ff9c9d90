"""GroupNorm kernels get one workgroup per (batch item, group) in the webgpu build, not one per
batch item (dlight's default, which left GroupNorm at 80 % of a full-size UNet step on the H200).
That the outputs stay right is verify's job (the build below passed it)."""

import re

import tvm

UNET_BATCH, GROUPS = 2, 8      # configs/models/tiny.toml: guidance_batch, unet.norm_num_groups


def _block_counts(module_json):
    mod = tvm.ir.load_json(module_json.read_text())
    counts = {}
    for gv in mod.get_global_vars():
        if "group_norm" in gv.name_hint or "layer_norm" in gv.name_hint:
            script = mod[gv].script()
            found = re.findall(r"T\.thread_binding\(T\.int64\((\d+)\), thread=\"blockIdx\.x\"\)",
                               script)
            counts[gv.name_hint] = [int(n) for n in found]
    return counts


def test_group_norm_kernels_run_one_workgroup_per_group(built_webgpu):
    ws, _ = built_webgpu
    for variant in ("unet", "unet-fp16"):
        counts = _block_counts(ws / "build" / "tiny" / "webgpu" / variant / "schedule"
                               / "module.json")
        group_norms = {k: v for k, v in counts.items() if "group_norm" in k}
        assert len(group_norms) >= 5, counts
        for name, blocks in group_norms.items():
            assert blocks == [UNET_BATCH * GROUPS], (variant, name, blocks)
        # layer norms (one statistic per token) are left to dlight's GeneralReduction
        for name, blocks in counts.items():
            if "layer_norm" in name:
                assert blocks and blocks[0] != UNET_BATCH * GROUPS, (name, blocks)
