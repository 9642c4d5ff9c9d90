"""The ordered lists of passes every component goes through: the only place they are listed.

PASSES runs in the `passes` stage (graph rewrites, lowering, fusion); SCHEDULE runs in the
`schedule` stage after the tuning database is applied (default schedules for what has no
record, then checks against the target's limits), so tuned kernels keep their records.
TVM_PASSES are TVM's own passes, by name, that the `plan` and `compile` stages run around memory
planning; the engine puts each stage's list in its config slice (stages/engine/dag.py), so
those stages' keys hold the list they run and not this whole file.
Each step names a module in stages/passes/ whose `make(target)` returns a tvm Pass. A step may
be limited to some components, target kinds or precisions; a stage's key covers only the
modules of the steps it runs, so editing a UNet-only pass rebuilds only the UNet, a
webgpu-only pass only webgpu builds, and a float16-only pass only float16 variants. To disable
a step, keep its line and set `components=()`.
This module is read by dodo.py at load time: it imports no tvm.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL = ("text_encoder", "unet", "vae_decoder", "vae_encoder")
GPU = ("webgpu", "cuda", "vulkan", "metal")


@dataclass(frozen=True)
class Step:
    module: str
    components: tuple[str, ...] = ALL
    targets: tuple[str, ...] | None = None     # target kinds; None = every target
    precisions: tuple[str, ...] = ("float32", "float16")
    features: tuple[str, ...] = ()             # runs only in variants built for all of these


PASSES = (
    # phase 1: graph rewrites on high-level Relax ops
    Step("unused_params"),
    Step("drop_unit_scale", components=("unet",)),
    Step("to_float16", precisions=("float16",)),
    Step("take_before_cast", components=("text_encoder",), precisions=("float16",)),
    # a model with weights = "int8" (config.WEIGHT_FEATURES); after the casts, so the
    # scales and the dequantized weights are in the variant's dtype
    Step("int8_weights", components=("text_encoder", "unet"), features=("int8-weights",)),
    # NOTE: after to_float16, so each attention kernel is built for the dtype it really gets
    Step("subgroup_matrix_attention", targets=("webgpu",), precisions=("float16",),
         features=("subgroup-matrix",)),
    # NOTE: after subgroup_matrix_attention (the -sm variants' self-attention), before
    # flash_attention (which takes the rest)
    Step("simt_attention", targets=("webgpu",)),
    Step("flash_attention"),
    # NOTE: before transpose_matmul, which would fuse the transposed weights it reads in place
    Step("subgroup_matrix", targets=("webgpu",), precisions=("float16",),
         features=("subgroup-matrix",)),
    # NOTE: after subgroup_matrix: it takes the GEMMs the matrix units cannot
    Step("simt", targets=("webgpu",)),
    Step("cancel_transposes"),
    # NOTE: GPUs only: on a CPU the weight's transpose is a cheap nest inside the matmul's
    # kernel, which then reads it in the tiled rule's layout (cpu_rule.py); read in place, every
    # output is one long dot product over a weight that misses the caches (docs/cpu.md)
    Step("transpose_matmul", targets=GPU),
    # and there the weights are stored as W.T in panels, so no call copies them (after
    # cancel_transposes: a transpose pair on a weight is no transpose)
    Step("weight_panels", targets=("llvm",)),
    Step("wgsl_literals", targets=("webgpu",)),
    # NOTE: before legalize, which would lower GroupNorm to float32 sums of a million values
    Step("group_norm_float64", targets=("llvm",)),
    # phase 2: lower every op to TensorIR
    Step("legalize"),
    # phase 3: constant folding and operator fusion
    Step("fold_constants"),
    Step("fuse"),
    # phase 4: cleanup
    Step("dead_code"),
)

SCHEDULE = (
    # phase 5 (after the tuning records): thread bindings for every kernel without a record,
    # and on CPUs threads and vector lanes
    Step("gpu_default_schedule", targets=GPU),
    Step("cpu_default_schedule", targets=("llvm",)),
    # and exp, sigmoid and erf as arithmetic in lanes, not a C library call per lane
    Step("vector_math", targets=("llvm",)),
    # phase 6: every kernel within the target's threads and workgroup memory, or a build error
    Step("gpu_limits", targets=GPU),
)

STAGES = {"passes": PASSES, "schedule": SCHEDULE}

TVM_PASSES = {
    # plan: lowered to the form StaticPlanBlockMemory plans
    "plan": ("RewriteDataflowReshape", "ToNonDataflow", "RemovePurityChecking",
             "CallTIRRewrite"),
    # compile: the Relax passes after StaticPlanBlockMemory in TVM's default pipeline, in order
    "compile": ("LowerAllocTensor", "KillAfterLastUse", "LowerRuntimeBuiltin", "ComputePrimValue",
             "VMShapeLower", "AttachGlobalSymbol"),
}
# gpu_limits (a SCHEDULE step): s_tir allocates a staged buffer at its full size until
# CompactBufferAllocation shrinks it to the region one workgroup touches, so the limits are
# measured after these s_tir passes, on a copy of the kernels
LIMITS_COMPACT = ("LowerCrossThreadReduction", "LowerInitBlock",
                  "PlanAndUpdateBufferAllocationLocation", "ConvertBlocksToOpaque",
                  "CompactBufferAllocation")


def steps(stage: str, component: str, target_kind: str, precision: str,
          features: tuple[str, ...] = ()) -> list[str]:
    """Names of the steps a component runs in a stage ("passes" or "schedule"), in order."""
    return [s.module for s in STAGES[stage] if component in s.components
            and (s.targets is None or target_kind in s.targets) and precision in s.precisions
            and set(s.features) <= set(features)]


def modules(stage: str, component: str, target_kind: str, precision: str,
            features: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Repo modules of those steps: part of that stage's key."""
    return tuple(f"stages.passes.{name}"
                 for name in steps(stage, component, target_kind, precision, features))


def build(stage: str, component: str, target, precision: str, features: tuple[str, ...] = ()):
    """A component's steps in a stage for a tvm Target, as one function IRModule -> IRModule.

    Each step's make(target) returns a tvm Pass or a plain function of the module (a check);
    they run in order from Python, so a check's BuildError reaches the build as itself (raised
    inside a tvm Pass, it would come back as a RuntimeError with a traceback).
    """
    import importlib

    passes = [importlib.import_module(f"stages.passes.{name}").make(target)
              for name in steps(stage, component, target.kind.name, precision, features)]

    def run(mod):
        for step in passes:
            mod = step(mod)
        return mod

    return run
