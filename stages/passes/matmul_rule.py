"""dlight's Matmul rule with workgroup tiles sized to the kernel's output on WebGPU.

dlight's default for WebGPU tiles a matmul (and a convolution, read as one) with 8 x 8
invocations computing 4 x 4 outputs each: 32 x 32 outputs per workgroup, 8 reduction steps per
load. Measured per kernel on the H200 (timestamp queries, bench/results/h200/):
- large outputs (SD's 64 x 64 and 32 x 32 layers, at least 2M outputs) ran faster with 16 x 16
  invocations (WebGPU's guaranteed 256): 64 x 64 outputs per workgroup from the same loads.
  float32 with 16 reduction steps per load (8 KiB of workgroup memory): 20-45 % faster per
  kernel; float16 with 8 (16 was 30 % slower): 15-35 % faster per kernel;
- medium outputs (the 16 x 16 layers, 640 workgroups) keep the default: 16 x 16 invocations
  with 2 x 2 outputs each ran 30-60 % slower;
- small outputs (the 8 x 8 latent layers with 1280 channels: 160 workgroups of 64 invocations
  for up to 23040 reduction steps) left the GPU idle: 1.7 TFLOP/s. With 2 x 2 outputs per
  invocation (four times the workgroups) they ran 35-40 % faster; the 16 x 16 layers (640
  workgroups already) ran 15-80 % slower that way, so they keep the default.
"""

from __future__ import annotations

BIG_TILE_MIN_OUTPUTS = 1 << 21     # kernels with at least this many outputs: 64 x 64
SMALL_TILE_MAX_OUTPUTS = 1 << 18   # kernels with at most this many outputs: 16 x 16


def make_rule():
    """The rule as a dlight GPUScheduleRule instance (tvm is imported here, not at load)."""
    from tvm import tirx
    from tvm.s_tir import dlight as dl

    def config(**kw):
        base = dict(block_size_x=8, block_size_y=8, micro_size_x=4, micro_size_y=4,
                    micro_size_k=8, vector_size=1, unroll=256, use_shared=True,
                    storage_align=False, inner_x=False)
        return dl.gpu.Matmul.Config(**{**base, **kw})

    big = config(block_size_x=16, block_size_y=16, micro_size_k=16)
    big_fp16 = config(block_size_x=16, block_size_y=16, micro_size_k=8)
    small = config(micro_size_x=2, micro_size_y=2, micro_size_k=16)

    class Matmul(dl.gpu.Matmul):
        def apply(self, func, target, tunable):
            self._choice = None
            params = list(func.params) if isinstance(func, tirx.PrimFunc) else []
            shape = getattr(params[-1], "shape", None) if params else None
            if target.kind.name == "webgpu" and shape is not None \
                    and all(isinstance(d, tirx.IntImm) for d in shape):
                n = 1
                for d in shape:
                    n *= int(d)
                fp32 = str(getattr(params[0], "dtype", "")) == "float32"
                if n <= SMALL_TILE_MAX_OUTPUTS:
                    self._choice = small
                elif n >= BIG_TILE_MIN_OUTPUTS:
                    self._choice = big if fp32 else big_fp16
            return super().apply(func, target, tunable)

        def get_configs(self, target):
            return self._choice or super().get_configs(target)

    return Matmul()
