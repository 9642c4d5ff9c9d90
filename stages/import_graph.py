"""import: captured torch graph -> Relax IRModule (JSON) + params (safetensors by Relax name).

Parameters stay function inputs (keep_params_as_input) and are detached from the module, so
the IRModule is small and the same module serves fp32 and fp16 parameter files.
The params file records, in its metadata, the order the compiled `main` takes them in and
the component's state-dict key each one holds (what a LoRA names: stages/emit.py).

Attention stays one op: torch's decompositions run without scaled_dot_product_attention, which
imports as `R.nn.attention` (through `_attention` below), so the flash_attention pass can give
it a kernel that never materializes the score matrix. Decomposed, it would be
matmul -> softmax -> matmul with a (batch, heads, queries, keys) buffer between them: 1 GiB
for SD v1.5's UNet at 64x64 latents.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.engine.progress import Bar, phase
from stages.engine.rule import Rule, Spec


def spec(r: Rule) -> Spec:
    """The captured graph in; the module and, at the model's default size, the params out (an
    extra size's graph takes the same params: its variants read the default size's file)."""
    outputs = {"module": r.common / "module.json"}
    if r.size is None:
        outputs["params"] = r.common / "params.safetensors"
    return r.spec({"graph": r.out("capture", "graph")}, outputs, {"component": r.component})


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import numpy as np
    import torch
    import tvm
    from safetensors.numpy import save_file
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    label = f"import:{cfg['component']}"
    exported = torch.export.load(str(inputs["graph"]))
    weights = _state_dict_keys(exported)
    phase(label, "run_decompositions")
    table = torch.export.default_decompositions()
    for op in [op for op in table.keys() if "scaled_dot_product" in str(op)]:
        del table[op]
    exported = exported.run_decompositions(table)
    phase(label, "from_exported_program")
    mod = from_exported_program(exported, keep_params_as_input=True,
                                unwrap_unit_return_tuple=True, run_ep_decomposition=False,
                                custom_convert_map={
                                    "scaled_dot_product_attention.default": _attention})
    mod, params = relax.frontend.detach_params(mod)
    main = mod["main"]
    num_inputs = int(main.attrs["num_input"])
    names = [p.name for p in main.params[num_inputs:]]
    values = params["main"]
    if len(names) != len(values) or len(set(names)) != len(names):
        raise ValueError(f"{label}: {len(names)} parameter names for {len(values)} values")
    outputs["module"].write_text(tvm.ir.save_json(mod))
    if "params" not in outputs:
        return
    bar = Bar(label, len(values), " params")
    arrays = {}
    for name, value in zip(names, values):
        arrays[name] = np.ascontiguousarray(value.numpy())
        bar.update()
    save_file(arrays, str(outputs["params"]),
              metadata={"order": json.dumps(names),
                        "weights": json.dumps({n: weights[n] for n in names if n in weights})})

def _state_dict_keys(exported) -> dict[str, str]:
    """Graph input name (`p_m_conv_in_weight`, the Relax param's name) -> the component's
    state-dict key (`conv_in.weight`), for its parameters and buffers; the export wrapper holds
    the component as `m` (stages/runtime/components.py)."""
    from torch.export.graph_signature import InputKind

    return {spec.arg.name: spec.target.removeprefix("m.")
            for spec in exported.graph_signature.input_specs
            if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER) and spec.target}


# The bias of a masked-out key: float16's lowest finite value, exact in float32 too, so the fp16
# variant keeps it; its exp is 0 next to any real score (WGSL has no infinity to write).
MASKED = -65504.0


def _attention(node, importer):
    """torch's scaled_dot_product_attention (B, H, S, D) -> R.nn.attention (B, S, H, D).

    TVM's own converter drops `scale` and refuses boolean masks (CLIP's causal mask is one); here
    a boolean mask becomes an additive bias (0 where attended, MASKED where not) and `scale` is
    kept.
    """
    from tvm import relax

    bb, env = importer.block_builder, importer.env
    args = list(node.args) + [None] * (7 - len(node.args))
    q, k, v = (env[a] for a in args[:3])
    mask = args[3] if args[3] is not None else node.kwargs.get("attn_mask")
    dropout = args[4] if args[4] is not None else node.kwargs.get("dropout_p", 0.0)
    causal = args[5] if args[5] is not None else node.kwargs.get("is_causal", False)
    scale = args[6] if args[6] is not None else node.kwargs.get("scale")
    if dropout or len(q.ty.shape) != 4:
        raise ValueError(f"import: scaled_dot_product_attention with dropout {dropout} or "
                         f"{len(q.ty.shape)}-D inputs is not supported")
    bias = None
    if mask is not None:
        bias = env[mask]
        if str(bias.ty.dtype) == "bool":
            zero = relax.const(0.0, q.ty.dtype)
            bias = bb.emit(relax.op.where(bias, zero, relax.const(MASKED, q.ty.dtype)))
        elif str(bias.ty.dtype) != str(q.ty.dtype):
            bias = bb.emit(relax.op.astype(bias, q.ty.dtype))
    to_bshd = [0, 2, 1, 3]
    q, k, v = (bb.emit(relax.op.permute_dims(t, to_bshd)) for t in (q, k, v))
    out = bb.emit(relax.op.nn.attention(q, k, v, bias=bias, scale=scale,
                                        causal_mask="TopLeft" if causal else None))
    return bb.emit(relax.op.permute_dims(out, to_bshd))
