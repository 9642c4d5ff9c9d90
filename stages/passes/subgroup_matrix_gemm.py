"""A float16 GEMM on the GPU's matrix units, in WGSL's subgroup matrices.

WebGPU has no tensor-core op, but Chromium's `chromium-experimental-subgroup-matrix` (Dawn:
Vulkan's VK_KHR_cooperative_matrix, Metal's simdgroup matrices) gives WGSL 16x16 tiles that a
whole subgroup loads, multiplies and stores together. TVM's WGSL codegen cannot express them,
so this module writes the kernel's entry point as WGSL text, and the build puts it in place of
the body TVM generated for a PrimFunc with the same buffers and grid (stages/passes/
subgroup_matrix.py builds that PrimFunc, stages/passes/wgsl_swap.py does the swap when the library
is packed).

P[s, b] = A[b] @ B[b] over the s-th of `splits` slices of k, in float32: A is m x k, row-major;
B is k x n, row-major, or, `b_transposed`, stored n x k (a linear layer's weight, read in place
as its transpose: column-major loads). A batch stride of 0 shares an operand across the batch (a
convolution's weight). The caller sums P over s (split-K: the UNet's GEMMs at 16x16 and 8x8
latents are too few tiles to fill the GPU otherwise) and casts. Each subgroup computes tm x tn
tiles of 16x16; a workgroup holds wm x wn subgroups; the grid is (n / tile_n, m / tile_m *
splits * batch): y counts m's tiles fastest, then the batch, then the split. Operands come
straight from storage: the L1/L2 caches serve the reuse (a variant that staged them through
workgroup memory, measured on the same shapes, was slower on all but two: bench/results/h200/
wgsl_gemm/direct_vs_staged.json).
Measured on the H200 (bench/results/h200/wgsl_gemm*.json): 75 TFLOP/s on a 4096^3 GEMM.
"""

from __future__ import annotations

from dataclasses import dataclass

TILE = 16                 # the subgroup matrix's M = N = K
SUBGROUP = 32             # invocations per subgroup the kernel is laid out for
ENABLES = ("f16", "subgroups", "chromium_experimental_subgroup_matrix")
# A subgroup's tile offsets derive from local_invocation_index / 32: uniform within the subgroup
# on every GPU whose subgroups are 32 consecutive invocations (what the variant requires), which
# WGSL's uniformity analysis cannot see.
DIRECTIVES = ("diagnostic(off, chromium.subgroup_matrix_uniformity);",)


@dataclass(frozen=True)
class Gemm:
    m: int
    n: int
    k: int
    batch: int = 1
    a_batch_stride: int = 0          # elements between batches of A (0: shared)
    b_batch_stride: int = 0
    b_transposed: bool = False       # B stored n x k
    splits: int = 1                  # slices of k, summed by the caller
    tm: int = 2                      # 16x16 tiles per subgroup along m
    tn: int = 4                      # ... along n
    wm: int = 1                      # subgroups per workgroup along m
    wn: int = 1                      # ... along n

    @property
    def tile_m(self) -> int:
        return self.tm * self.wm * TILE

    @property
    def tile_n(self) -> int:
        return self.tn * self.wn * TILE

    @property
    def threads(self) -> int:
        return SUBGROUP * self.wm * self.wn

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.n // self.tile_n, self.m // self.tile_m * self.splits * self.batch, 1)

    @property
    def k_slice(self) -> int:
        return self.k // self.splits

    def fits(self) -> bool:
        return (self.m % self.tile_m == 0 and self.n % self.tile_n == 0
                and self.k % self.splits == 0 and self.k_slice % TILE == 0)

    @property
    def flop(self) -> int:
        return 2 * self.m * self.n * self.k * self.batch


def entry_point(g: Gemm, name: str, a: str, b: str, p: str) -> str:
    """The compute entry point `name` over the storage buffers named a, b (float16) and p
    (float32, the partial products): WGSL that follows the bindings of a shader module."""
    if not g.fits():
        raise ValueError(f"subgroup_matrix_gemm: {g} does not fit its tiles")
    m, n, k = g.m, g.n, g.k
    left = f"subgroup_matrix_left<f16, {TILE}, {TILE}>"
    right = f"subgroup_matrix_right<f16, {TILE}, {TILE}>"
    result = f"subgroup_matrix_result<f32, {TILE}, {TILE}>"
    tiles = [(i, j) for i in range(g.tm) for j in range(g.tn)]
    out = [
        f"@compute @workgroup_size({g.threads}, 1, 1)",
        f"fn {name}(@builtin(workgroup_id) wg : vec3<u32>,",
        "    @builtin(local_invocation_index) lid : u32) {",
        f"  let sg = lid / {SUBGROUP}u;" if g.wm * g.wn > 1 else "  let sg = 0u;",
        f"  let z = wg.y / {m // g.tile_m}u;",
        f"  let m0 = (wg.y % {m // g.tile_m}u) * {g.tile_m}u + (sg / {g.wn}u) * {g.tm * TILE}u;",
        f"  let n0 = wg.x * {g.tile_n}u + (sg % {g.wn}u) * {g.tn * TILE}u;",
        f"  let bz = z % {g.batch}u;",
        f"  let k0 = (z / {g.batch}u) * {g.k_slice}u;",
        f"  let a0 = bz * {g.a_batch_stride}u + m0 * {k}u;",
        f"  let b0 = bz * {g.b_batch_stride}u;",
        f"  let p0 = z * {m * n}u;",
    ]
    out += [f"  var acc{i}_{j} = {result}();" for i, j in tiles]
    out += [f"  for (var kk = k0; kk < k0 + {g.k_slice}u; kk += {TILE}u) {{"]
    out += [f"    let l{i} = subgroupMatrixLoad<{left}, row_major>(&{a}, a0 + {i * TILE * k}u + kk, {k}u);"
            for i in range(g.tm)]
    for j in range(g.tn):
        if g.b_transposed:
            off, major, stride = f"b0 + (n0 + {j * TILE}u) * {k}u + kk", "col_major", k
        else:
            off, major, stride = f"b0 + kk * {n}u + n0 + {j * TILE}u", "row_major", n
        out.append(f"    let r{j} = subgroupMatrixLoad<{right}, {major}>(&{b}, {off}, {stride}u);")
    out += [f"    acc{i}_{j} = subgroupMatrixMultiplyAccumulate(l{i}, r{j}, acc{i}_{j});"
            for i, j in tiles]
    out.append("  }")
    out += [f"  subgroupMatrixStore<row_major>(&{p}, p0 + (m0 + {i * TILE}u) * {n}u + n0 + {j * TILE}u, "
            f"acc{i}_{j}, {n}u);" for i, j in tiles]
    out.append("}")
    return "\n".join(out) + "\n"

