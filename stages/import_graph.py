"""import: captured torch graph -> Relax IRModule (JSON) + params (safetensors by Relax name).

Parameters stay function inputs (keep_params_as_input) and are detached from the module, so
the IRModule is small and the same module serves fp32 and fp16 parameter files.
The params file records the order the compiled `main` takes them in, in its metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.progress import Bar, phase


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    import numpy as np
    import torch
    import tvm
    from safetensors.numpy import save_file
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    label = f"import:{cfg['component']}"
    exported = torch.export.load(str(inputs["graph"]))
    phase(label, "from_exported_program")
    mod = from_exported_program(exported, keep_params_as_input=True,
                                unwrap_unit_return_tuple=True)
    mod, params = relax.frontend.detach_params(mod)
    main = mod["main"]
    num_inputs = int(main.attrs["num_input"])
    names = [p.name for p in main.params[num_inputs:]]
    values = params["main"]
    if len(names) != len(values) or len(set(names)) != len(names):
        raise ValueError(f"{label}: {len(names)} parameter names for {len(values)} values")
    bar = Bar(label, len(values), " params")
    arrays = {}
    for name, value in zip(names, values):
        arrays[name] = np.ascontiguousarray(value.numpy())
        bar.update()
    save_file(arrays, str(outputs["params"]), metadata={"order": json.dumps(names)})
    outputs["module"].write_text(tvm.ir.save_json(mod))
