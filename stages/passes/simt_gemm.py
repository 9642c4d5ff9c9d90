"""A GEMM for every WebGPU adapter: register tiles and workgroup memory, in plain WGSL.

The float32 and float16 variants run on any adapter, with WebGPU's guaranteed limits (256
invocations, 16 KiB of workgroup memory) and no subgroup matrices. TVM's default schedules ran
their convolutions and linear layers at 3-8 TFLOP/s on the H200 (bench/results/h200/
session8_final: 160 of the float32 UNet step's 292 ms in convolutions). This kernel is the
classic SIMT GEMM: a workgroup owns a bm x bn block of P; each stage, its invocations copy a
bm x bk slice of A and a bk x bn slice of B into workgroup memory (16-byte loads: A and B
bound as array<vec4<f32>> or array<vec4<f16>>, which the swap rebinds), both stored k-major as
float32, and each invocation multiplies tm x tn values of P from them in registers, reading 4
of A and 4 of B per vec4 load (its rows and columns in groups of 4, the groups half a block
apart, so a subgroup's loads of B are consecutive and its loads of A a broadcast). Two stages:
the next slice's global loads are in flight while the current one is multiplied.

Same contract as stages/passes/subgroup_matrix_gemm.py (which the -sm variants use): P[s, b] =
A[b] @ B[b] over the s-th of `splits` slices of k, accumulated in float32; A is m x k,
row-major; B is k x n, or n x k when `b_transposed` (a linear layer's weight read in place); a
batch stride of 0 shares an operand across the batch. The grid is (n / bn, m / bm * splits *
batch). P is float32, or (`product_dtype`, unsplit only) float16 where the caller would have
cast it to float16 right away: the same values in half the memory (the VAE decoder's
128-channel products at 512x512: 128 -> 64 MiB).

A convolution's GEMM (`conv` set) reads its input in place, an implicit im2col: B[kk, p] is
x[b, ci, y*sh + i - pt, x'*sw + j - pl] (zero outside) for kk = (ci * kh + i) * kw + j and
p = y * wo + x', so the im2col buffer (up to 9x the input, 283 MB for the UNet's largest in
float32) is neither written nor read. Each invocation's 4 columns of a stage share a row of the
output (wo a multiple of 4); they are 4 scalar loads, B bound as an array of scalars.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.passes.gemm_rewrite import conv_gather, conv_origin

VEC = 4                   # operands and results move 4 elements a load
WGSL_TYPE = {"float32": "f32", "float16": "f16"}
DTYPE_OF = {short: dtype for dtype, short in WGSL_TYPE.items()}   # and back (kernel names)
ENABLES = {"float32": (), "float16": ("f16",)}
MAX_THREADS = 256         # WebGPU's guaranteed maxComputeInvocationsPerWorkgroup
MAX_WORKGROUP_BYTES = 16384   # ... and maxComputeWorkgroupStorageSize


@dataclass(frozen=True)
class SimtGemm:
    m: int
    n: int
    k: int
    batch: int = 1
    a_batch_stride: int = 0          # elements between batches of A (0: shared)
    b_batch_stride: int = 0
    b_transposed: bool = False       # B stored n x k
    splits: int = 1                  # slices of k, summed by the caller
    dtype: str = "float32"           # A's and B's element type (P's: product_dtype)
    bm: int = 128                    # P's block per workgroup along m
    bn: int = 128                    # ... along n
    tm: int = 8                      # P's values per invocation along m (4 or 8)
    tn: int = 8                      # ... along n
    bk: int = 8                      # k per stage
    # a convolution's geometry when B is its input read in place: (ci, h, w, kh, kw, sh, sw,
    # pt, pl, wo); () when B is a matrix in storage
    conv: tuple[int, ...] = ()
    product_dtype: str = "float32"   # P's element type: float32, or g.dtype where k is not split

    @property
    def tile_m(self) -> int:
        return self.bm

    @property
    def tile_n(self) -> int:
        return self.bn

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.n // self.bn, self.m // self.bm * self.splits * self.batch, 1)

    @property
    def k_slice(self) -> int:
        return self.k // self.splits

    @property
    def loads(self) -> tuple[int, int]:
        """16-byte loads per invocation per stage, of A and of B."""
        return (self.bm * self.bk // VEC // self.threads, self.bk * self.bn // VEC // self.threads)

    @property
    def workgroup_bytes(self) -> int:
        return 2 * 4 * self.bk * (self.bm + self.bn)

    def fits(self) -> bool:
        a_loads, b_loads = self.loads
        return (self.tm in (4, 8) and self.tn in (4, 8) and self.bm % (self.tm * 4) == 0
                and self.bn % (self.tn * 4) == 0 and self.threads <= MAX_THREADS
                and self.m % self.bm == 0 and self.n % self.bn == 0
                and self.k % self.splits == 0 and self.k_slice % self.bk == 0
                and self.bk % VEC == 0 and self.k % VEC == 0
                and a_loads * self.threads * VEC == self.bm * self.bk
                and b_loads * self.threads * VEC == self.bk * self.bn and min(a_loads, b_loads) > 0
                and self.a_batch_stride % VEC == 0
                and (self.b_batch_stride % VEC == 0 or bool(self.conv))
                and self.workgroup_bytes <= MAX_WORKGROUP_BYTES and self._conv_fits()
                and self.product_dtype in ("float32", self.dtype)
                and (self.product_dtype == "float32" or self.splits == 1))

    def _conv_fits(self) -> bool:
        if not self.conv:
            return True
        ci, _, _, kh, kw, _, _, _, _, wo = self.conv
        return (not self.b_transposed and wo % VEC == 0 and self.n % wo == 0
                and self.k == ci * kh * kw)

    @property
    def p_type(self) -> str:
        """The WGSL element type P is bound as."""
        return f"vec4<{WGSL_TYPE[self.product_dtype]}>"

    @property
    def a_type(self) -> str:
        """The WGSL element type A is bound as."""
        return f"vec4<{WGSL_TYPE[self.dtype]}>"

    @property
    def b_type(self) -> str:
        """... and B: scalars when it is a convolution's input."""
        return WGSL_TYPE[self.dtype] if self.conv else self.a_type

    @property
    def flop(self) -> int:
        return 2 * self.m * self.n * self.k * self.batch


def entry_point(g: SimtGemm, name: str, a: str, b: str, p: str) -> str:
    """The compute entry point `name` over the storage buffers named a, b (g.dtype, as
    array<vec4<...>>) and p (g.product_dtype, as array<vec4<...>>)."""
    if not g.fits():
        raise ValueError(f"simt_gemm: {g} does not fit its tiles")
    m, n, k, bm, bn, bk, threads = g.m, g.n, g.k, g.bm, g.bn, g.bk, g.threads
    gm, gn = g.tm // VEC, g.tn // VEC            # groups of 4 rows / columns per invocation
    cols = bn // g.tn                            # invocations along n
    a_loads, b_loads = g.loads
    a_size, b_size = bk * bm // VEC, bk * bn // VEC    # one stage, in vec4s
    out = [f"var<workgroup> sa : array<vec4<f32>, {2 * a_size}>;",
           f"var<workgroup> sb : array<vec4<f32>, {2 * b_size}>;",
           "",
           f"@compute @workgroup_size({threads}, 1, 1)",
           f"fn {name}(@builtin(workgroup_id) wg : vec3<u32>,",
           "    @builtin(local_invocation_index) lid : u32) {",
           f"  let tx = lid % {cols}u;",
           f"  let ty = lid / {cols}u;",
           f"  let z = wg.y / {m // bm}u;",
           f"  let mb = (wg.y % {m // bm}u) * {bm}u;",
           f"  let nb = wg.x * {bn}u;",
           f"  let bz = z % {g.batch}u;",
           f"  let k0 = (z / {g.batch}u) * {g.k_slice}u;",
           f"  let a0 = bz * {g.a_batch_stride}u + mb * {k}u + k0;",
           f"  let b0 = bz * {g.b_batch_stride}u" + ("" if g.conv else f" + nb * {k}u + k0"
                                                     if g.b_transposed else f" + k0 * {n}u + nb")
           + ";",
           f"  let p0 = z * {m * n}u;"]

    # Each of an invocation's 16-byte loads: where it reads (in elements, before the stage's k
    # offset) and where in workgroup memory its 4 values go. A k-major slice: (kk, row) at
    # kk * rows / 4 + row / 4, component row % 4.
    def rows_of_k(prefix: str, count: int, base: str) -> list[str]:
        lines = []
        for v in range(count):
            i = f"{prefix}i{v}"
            lines += [f"  let {i} = lid + {v * threads}u;",
                      f"  let {prefix}g{v} = {base} + ({i} / {bk // VEC}u) * {k}u + ({i} % {bk // VEC}u) * 4u;",
                      f"  let {prefix}r{v} = {i} / {bk // VEC}u;",
                      f"  let {prefix}k{v} = ({i} % {bk // VEC}u) * 4u;"]
        return lines

    out += rows_of_k("a", a_loads, "a0")
    if g.conv:
        for v in range(b_loads):   # row of the stage's k slice, output pixel of the 4 columns
            out += [f"  let bi{v} = lid + {v * threads}u;",
                    *conv_origin(g.conv, v, bn // VEC, VEC),
                    f"  let bs{v} = bkr{v} * {bn // VEC}u + bi{v} % {bn // VEC}u;"]
    elif g.b_transposed:
        out += rows_of_k("b", b_loads, "b0")
    else:
        for v in range(b_loads):
            out += [f"  let bi{v} = lid + {v * threads}u;",
                    f"  let bg{v} = b0 + (bi{v} / {bn // VEC}u) * {n}u + (bi{v} % {bn // VEC}u) * 4u;",
                    f"  let bs{v} = (bi{v} / {bn // VEC}u) * {bn // VEC}u + bi{v} % {bn // VEC}u;"]

    def fetch(step: str) -> list[str]:
        """Global loads of the slice `step` (a WGSL u32 expression) into registers."""
        lines = [f"    ra{v} = vec4<f32>({a}[(ag{v} + {step} * {bk}u) / 4u]);" for v in range(a_loads)]
        if g.conv:
            return lines + [x for v in range(b_loads) for x in conv_fetch(v, step)]
        bstep = f"{step} * {bk}u" if g.b_transposed else f"{step} * {bk * n}u"
        lines += [f"    rb{v} = vec4<f32>({b}[(bg{v} + {bstep}) / 4u]);" for v in range(b_loads)]
        return lines

    def conv_fetch(v: int, step: str) -> list[str]:
        """B's 4 values of load v: 4 output pixels of one row."""
        lines, values = conv_gather(g.conv, b, v, f"k0 + {step} * {bk}u + bkr{v}", VEC, "0.0", "f32")
        return lines + [f"      rb{v}.{comp} = {x};" for comp, x in zip("xyzw", values)] + ["    }"]

    def transposed_put(arr: str, reg: str, v: int, rows: int, stage: str, size: int) -> list[str]:
        r, kk = f"{reg[1]}r{v}", f"{reg[1]}k{v}"
        return [f"    {arr}[{stage} * {size}u + ({kk} + {c}u) * {rows // VEC}u + {r} / 4u][{r} % 4u] = {reg}{v}.{x};"
                for c, x in enumerate("xyzw")]

    def put(stage: str) -> list[str]:
        lines = []
        for v in range(a_loads):
            lines += transposed_put("sa", "ra", v, bm, stage, a_size)
        for v in range(b_loads):
            if g.b_transposed:
                lines += transposed_put("sb", "rb", v, bn, stage, b_size)
            else:
                lines.append(f"    sb[{stage} * {b_size}u + bs{v}] = rb{v};")
        return lines

    out += [f"  var ra{v} : vec4<f32>;" for v in range(a_loads)]
    out += [f"  var rb{v} : vec4<f32>;" for v in range(b_loads)]
    acc = [(gi, i, gj) for gi in range(gm) for i in range(VEC) for gj in range(gn)]
    out += [f"  var c{gi}_{i}_{gj} = vec4<f32>();" for gi, i, gj in acc]
    out += ["  {"] + fetch("0u") + put("0u") + ["  }", "  workgroupBarrier();"]
    steps = g.k_slice // bk
    out += [f"  for (var t = 0u; t < {steps}u; t++) {{",
            "    let cur = t % 2u;",
            f"    let more = t + 1u < {steps}u;",
            "    if (more) {"] + ["  " + x for x in fetch("(t + 1u)")] + ["    }"]
    for kk in range(bk):
        out.append("    {")
        out += [f"    let x{gi} = sa[cur * {a_size}u + {kk * bm // VEC + gi * bm // gm // VEC}u + ty];"
                for gi in range(gm)]
        out += [f"    let y{gj} = sb[cur * {b_size}u + {kk * bn // VEC + gj * bn // gn // VEC}u + tx];"
                for gj in range(gn)]
        out += [f"    c{gi}_{i}_{gj} = fma(vec4<f32>(x{gi}.{'xyzw'[i]}), y{gj}, c{gi}_{i}_{gj});"
                for gi, i, gj in acc]
        out.append("    }")
    out += ["    if (more) {"] + ["  " + x for x in put("(1u - cur)")] + ["    }",
            "    workgroupBarrier();", "  }"]
    # P's rows mb + gi * bm / gm + ty * 4 + i, columns nb + gj * bn / gn + tx * 4 .. + 3
    for gi, i, gj in acc:
        row = f"mb + {gi * bm // gm + i}u + ty * 4u"
        col = f"nb + {gj * bn // gn}u + tx * 4u"
        value = f"c{gi}_{i}_{gj}" if g.product_dtype == "float32" else f"{g.p_type}(c{gi}_{i}_{gj})"
        out.append(f"  {p}[(p0 + ({row}) * {n}u + {col}) / 4u] = {value};")
    out.append("}")
    return "\n".join(out) + "\n"
