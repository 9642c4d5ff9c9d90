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
splits * batch): y counts m's tiles fastest, then the batch, then the split.

Two ways to feed the matrix units. Straight from storage (bk = 0): each subgroup loads its
16x16 tiles from the storage buffers and the L1/L2 caches serve the reuse. Staged (bk > 0): the
workgroup's invocations copy a tile_m x bk slice of A and a bk x tile_n slice of B into
workgroup memory with 16-byte loads (A and B bound as array<vec4<u32>>, 8 float16 a load; the
swap rebinds them), and every subgroup loads its tiles from there; rows are padded by PAD
halves against bank conflicts, and with two stages the next slice's loads are in flight while
the subgroups multiply the current one. Staged, four subgroups of 4x4 tiles ran the UNet's
GEMMs 2.1x faster than one subgroup straight from storage (bench/results/h200/wgsl_kernels/
run5_staged/: 1.06 against 2.24 ms over one call of each shape; 4096^3: 0.60 against 1.82 ms,
230 TFLOP/s). An earlier staged kernel with 2-byte loads was 5x slower than the direct one
(wgsl_gemm/direct_vs_staged.json), most likely for its narrow loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.passes.gemm_rewrite import conv_gather, conv_origin

TILE = 16                 # the subgroup matrix's M = N = K
PAD = 8                   # halves added to each row of a staged tile (workgroup-memory banks)
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
    bk: int = 0                      # k per stage through workgroup memory; 0: straight from storage
    stages: int = 2                  # workgroup-memory buffers of a staged kernel (2: double buffered)
    # a convolution's geometry where B is its input read in place (a staged kernel only): (ci,
    # h, w, kh, kw, sh, sw, pt, pl, wo); () where B is a matrix in storage
    conv: tuple[int, ...] = ()

    dtype = "float16"                # A's and B's element type
    product_dtype = "float32"        # P's (result matrices store float32)

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
        ok = (self.m % self.tile_m == 0 and self.n % self.tile_n == 0
              and self.k % self.splits == 0 and self.k_slice % TILE == 0)
        if self.bk:
            ok = ok and (self.bk % TILE == 0 and self.k_slice % self.bk == 0
                         and self.tile_m * self.bk // 8 % self.threads == 0
                         and self.tile_n * self.bk // 8 % self.threads == 0
                         and self.a_batch_stride % 8 == 0
                         and (self.b_batch_stride % 8 == 0 or bool(self.conv)))
        if self.conv:   # 8 output pixels of one row a load
            ci, _, _, kh, kw, _, _, _, _, wo = self.conv
            ok = ok and (bool(self.bk) and not self.b_transposed and wo % 8 == 0
                         and self.n % wo == 0 and self.k == ci * kh * kw)
        return ok

    @property
    def operand_type(self) -> str:
        """The WGSL element type A (and B) is bound as: a staged kernel reads 16 bytes a load."""
        return "vec4<u32>" if self.bk else "f16"

    @property
    def b_type(self) -> str:
        """... and B: scalars when it is a convolution's input."""
        return "f16" if self.conv else self.operand_type

    @property
    def stage_layout(self) -> tuple[int, int, int, int]:
        """A staged kernel's tiles in workgroup memory, in halves: (row stride of A's tile, row
        stride of B's, A's tile, B's tile). A is tile_m x bk; B is tile_n x bk when transposed,
        else bk x tile_n; every row padded by PAD."""
        sa = self.bk + PAD
        sb = self.bk + PAD if self.b_transposed else self.tile_n + PAD
        return sa, sb, self.tile_m * sa, (self.tile_n if self.b_transposed else self.bk) * sb

    @property
    def workgroup_bytes(self) -> int:
        if not self.bk:
            return 0
        _, _, a, b = self.stage_layout
        return 2 * (a + b) * self.stages

    @property
    def flop(self) -> int:
        return 2 * self.m * self.n * self.k * self.batch


def entry_point(g: Gemm, name: str, a: str, b: str, p: str) -> str:
    """The compute entry point `name` over the storage buffers named a, b (float16) and p
    (float32, the partial products): WGSL that follows the bindings of a shader module."""
    if not g.fits():
        raise ValueError(f"subgroup_matrix_gemm: {g} does not fit its tiles")
    if g.bk:
        return staged_entry_point(g, name, a, b, p)
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


def staged_entry_point(g, name: str, a: str, b: str, p: str) -> str:
    """The GEMM with its operands staged through workgroup memory (see the module docstring).

    a and b are bound as array<vec4<u32>> (8 float16 per element: one 16-byte load each); each
    stage copies a tile_m x bk slice of A and a bk x tile_n slice of B into workgroup memory,
    where every subgroup of the workgroup loads its 16x16 tiles. With two stages the loads of
    the next slice are in flight while the subgroups multiply the current one."""
    if not g.fits():
        raise ValueError(f"subgroup_matrix_gemm: {g} does not fit its tiles")
    m, n, k, bk = g.m, g.n, g.k, g.bk
    bm, bn, threads = g.tile_m, g.tile_n, g.threads
    left = f"subgroup_matrix_left<f16, {TILE}, {TILE}>"
    right = f"subgroup_matrix_right<f16, {TILE}, {TILE}>"
    result = f"subgroup_matrix_result<f32, {TILE}, {TILE}>"
    sa, sb, a_size, b_size = g.stage_layout
    a_vecs, b_vecs = bm * bk // 8, bk * bn // 8
    a_per, b_per = a_vecs // threads, b_vecs // threads
    tiles = [(i, j) for i in range(g.tm) for j in range(g.tn)]
    out = [f"var<workgroup> sa : array<f16, {a_size * g.stages}>;",
           f"var<workgroup> sb : array<f16, {b_size * g.stages}>;",
           "",
           f"@compute @workgroup_size({threads}, 1, 1)",
           f"fn {name}(@builtin(workgroup_id) wg : vec3<u32>,",
           "    @builtin(local_invocation_index) lid : u32) {",
           f"  let sg = lid / {SUBGROUP}u;",
           f"  let z = wg.y / {m // bm}u;",
           f"  let mb = (wg.y % {m // bm}u) * {bm}u;",
           f"  let nb = wg.x * {bn}u;",
           f"  let sm = (sg / {g.wn}u) * {g.tm * TILE}u;",
           f"  let sn = (sg % {g.wn}u) * {g.tn * TILE}u;",
           f"  let bz = z % {g.batch}u;",
           f"  let k0 = (z / {g.batch}u) * {g.k_slice}u;",
           f"  let a0 = bz * {g.a_batch_stride}u + mb * {k}u;",
           f"  let b0 = bz * {g.b_batch_stride}u;",
           f"  let p0 = z * {m * n}u;"]
    # where each invocation's 16-byte pieces go: (global offset in halves without kk, shared offset)
    for v in range(a_per):
        out += [f"  let ai{v} = lid + {v * threads}u;",
                f"  let ag{v} = a0 + (ai{v} / {bk // 8}u) * {k}u + (ai{v} % {bk // 8}u) * 8u;",
                f"  let as{v} = (ai{v} / {bk // 8}u) * {sa}u + (ai{v} % {bk // 8}u) * 8u;"]
    for v in range(b_per):
        out.append(f"  let bi{v} = lid + {v * threads}u;")
        if g.conv:           # row of the stage's k slice; 8 output pixels of one row
            out += [*conv_origin(g.conv, v, bn // 8, 8),
                    f"  let bs{v} = bkr{v} * {sb}u + (bi{v} % {bn // 8}u) * 8u;"]
        elif g.b_transposed:   # n x k in storage: bn rows of bk, as A
            out += [f"  let bg{v} = b0 + (nb + bi{v} / {bk // 8}u) * {k}u + (bi{v} % {bk // 8}u) * 8u;",
                    f"  let bs{v} = (bi{v} / {bk // 8}u) * {sb}u + (bi{v} % {bk // 8}u) * 8u;"]
        else:                # k x n: bk rows of bn
            out += [f"  let bg{v} = b0 + (bi{v} / {bn // 8}u) * {n}u + nb + (bi{v} % {bn // 8}u) * 8u;",
                    f"  let bs{v} = (bi{v} / {bn // 8}u) * {sb}u + (bi{v} % {bn // 8}u) * 8u;"]

    def fetch(kk: str) -> list[str]:
        lines = [f"    ra{v} = {a}[(ag{v} + {kk}) / 8u];" for v in range(a_per)]
        if g.conv:
            return lines + [x for v in range(b_per) for x in conv_fetch(v, kk)]
        bstep = kk if g.b_transposed else f"({kk}) * {n}u"
        lines += [f"    rb{v} = {b}[(bg{v} + {bstep}) / 8u];" for v in range(b_per)]
        return lines

    def conv_fetch(v: int, kk: str) -> list[str]:
        """B's 8 values of load v (8 output pixels of one row), packed as put() takes them."""
        lines, values = conv_gather(g.conv, b, v, f"{kk} + bkr{v}", 8, "f16(0)", "")
        lines += [f"      let e{c} = {x};" for c, x in enumerate(values)]
        return lines + [f"      rb{v} = vec4<u32>(" + ", ".join(
            f"bitcast<u32>(vec2<f16>(e{2 * i}, e{2 * i + 1}))" for i in range(4)) + "); }"]

    def put(stage: str) -> list[str]:
        lines = []
        for arr, regs, offs, size, count in (("sa", "ra", "as", a_size, a_per),
                                            ("sb", "rb", "bs", b_size, b_per)):
            for v in range(count):
                base = f"{stage} * {size}u + {offs}{v}"
                for w, c in enumerate("xyzw"):
                    lines += [f"    {{ let h = bitcast<vec2<f16>>({regs}{v}.{c});",
                              f"      {arr}[{base} + {2 * w}u] = h.x; {arr}[{base} + {2 * w + 1}u] = h.y; }}"]
        return lines

    out += [f"  var ra{v} : vec4<u32>;" for v in range(a_per)]
    out += [f"  var rb{v} : vec4<u32>;" for v in range(b_per)]
    out += [f"  var acc{i}_{j} = {result}();" for i, j in tiles]
    out += ["  {"] + fetch("k0") + put("0u") + ["  }", "  workgroupBarrier();"]
    steps = g.k_slice // bk
    out += [f"  for (var t = 0u; t < {steps}u; t++) {{",
            f"    let cur = t % {g.stages}u;" if g.stages > 1 else "    let cur = 0u;",
            f"    let more = t + 1u < {steps}u;"]
    if g.stages > 1:
        out += ["    if (more) {"] + ["  " + x for x in fetch(f"k0 + (t + 1u) * {bk}u")] + ["    }"]
    for kt in range(bk // TILE):
        out.append("    {")
        out += [f"    let l{i} = subgroupMatrixLoad<{left}, row_major>(&sa, cur * {a_size}u + "
                f"(sm + {i * TILE}u) * {sa}u + {kt * TILE}u, {sa}u);" for i in range(g.tm)]
        for j in range(g.tn):
            if g.b_transposed:
                out.append(f"    let r{j} = subgroupMatrixLoad<{right}, col_major>(&sb, cur * {b_size}u + "
                           f"(sn + {j * TILE}u) * {sb}u + {kt * TILE}u, {sb}u);")
            else:
                out.append(f"    let r{j} = subgroupMatrixLoad<{right}, row_major>(&sb, cur * {b_size}u + "
                           f"{kt * TILE * sb}u + sn + {j * TILE}u, {sb}u);")
        out += [f"    acc{i}_{j} = subgroupMatrixMultiplyAccumulate(l{i}, r{j}, acc{i}_{j});"
                for i, j in tiles]
        out.append("    }")
    if g.stages > 1:
        out += ["    if (more) {"] + ["  " + x for x in put(f"((t + 1u) % {g.stages}u)")] + ["    }",
                "    workgroupBarrier();"]
    else:
        out += ["    workgroupBarrier();", "    if (more) {"]
        out += ["  " + x for x in fetch(f"k0 + (t + 1u) * {bk}u")]
        out += ["  " + x for x in put("0u")] + ["    }", "    workgroupBarrier();"]
    out.append("  }")
    out += [f"  subgroupMatrixStore<row_major>(&{p}, p0 + (mb + sm + {i * TILE}u) * {n}u + nb + sn + "
            f"{j * TILE}u, acc{i}_{j}, {n}u);" for i, j in tiles]
    out.append("}")
    return "\n".join(out) + "\n"
