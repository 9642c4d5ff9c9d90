"""Only what changed rebuilds: pass edits (real and comment-only) and config edits."""

import pytest

from conftest import ALL_TASKS, doit, edit, keep_unit_scales, report, summary

# `package` lists the sha256 of every file of the model, so it follows any component's change
UNET_FROM_PASSES = {f"{s}:unet" for s in ("passes", "schedule", "plan", "compile", "emit",
                                             "verify")} | {
    "package"}
TEXT_ENCODER_ALL = {f"{s}:text_encoder" for s in ("weights", "capture", "import", "passes",
                                                  "schedule", "plan", "compile", "emit",
                                                  "verify")} | {
    "package"}


def test_real_unet_pass_edit_rebuilds_only_unet_from_passes(workspace):
    keep_unit_scales(workspace)  # a different module, still correct
    proc = doit(workspace, "build")
    built = report(workspace)["built"]
    assert built == UNET_FROM_PASSES, built
    assert summary(proc) == (len(UNET_FROM_PASSES), 0, len(ALL_TASKS) - len(UNET_FROM_PASSES))


def test_comment_only_pass_edit_stops_after_passes(workspace):
    edit(workspace / "stages/passes/drop_unit_scale.py", "def make(target):",
          "# a comment that changes the source, not the module it produces\ndef make(target):")
    proc = doit(workspace, "build")
    assert report(workspace)["built"] == {"passes:unet"}
    assert summary(proc) == (1, 0, len(ALL_TASKS) - 1)


def test_text_encoder_config_change_rebuilds_only_text_encoder(workspace):
    edit(workspace / "configs/models/tiny.toml", "intermediate_size = 64",
          "intermediate_size = 48")
    doit(workspace, "build")
    assert report(workspace)["built"] == TEXT_ENCODER_ALL


@pytest.mark.long      # every component's passes onward again; the README's run stays <= 20 min
def test_shared_pass_edit_rebuilds_every_component_it_runs_on(workspace):
    edit(workspace / "stages/passes/fuse.py", "relax.transform.FuseTIR(),",
          "relax.transform.FuseTIR(),\n        relax.transform.DeadCodeElimination(),")
    doit(workspace, "build")
    built = report(workspace)["built"]
    assert {f"passes:{c}" for c in ("text_encoder", "unet", "vae_decoder")} <= built
    assert not any(t.split(":")[0] in ("weights", "capture", "import") for t in built)
