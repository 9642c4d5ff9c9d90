"""dlight rules for CPU (llvm) kernels without a tuning record: threads and vector lanes.

Untuned TVM llvm code was plain loops on one thread, 50-115x slower than PyTorch eager at full
size (issue 20). Two rules:

- `Tiled`: a kernel with one reduction block (a convolution, a matmul), its spatial axes first,
  plus injective blocks around it (padding before; bias, residual, cast after). Each output
  tile of `rows` x `lanes` elements is accumulated in a local buffer (registers, once LLVM has
  unrolled it) over the whole reduction and written once, with the epilogue inlined into that
  write; tiles run in parallel. `lanes` runs along the output's last axis (vectorized); `rows`
  along the spatial axis that the reads indexed by the lanes' axis do not use (a convolution's
  output channels, a matmul's rows), so each loaded vector serves `rows` outputs and each
  broadcast scalar `lanes`. Tiles are taken in cache blocks (BLOCK_TILES along the lanes,
  ROW_BLOCK_TILES along the rows), each block's operand strips reused by all its tiles. A read
  that is strided along the lanes' axis (a weight read transposed in place; SD's CPU build has
  none since transpose_matmul became GPU-only) makes the lanes run along the reduction
  instead, through rfactor: partial sums per lane, added up once per output.
- `Spatial`: every other kernel: injective blocks inlined into the injective blocks that read
  them, each remaining loop nest's spatial loops fused and run in parallel, and the innermost
  loop of an injective nest vectorized when its extent allows.

The reduction order of each output is unchanged (the lanes are other outputs), except under
rfactor, where it is `lanes` interleaved partial sums. What runs in parallel is TVM's thread
pool (TVM_NUM_THREADS, else every core).
"""

from __future__ import annotations

import math

ROWS = 8          # outputs per tile along the reuse axis
LANES = 16        # float32 lanes of an injective nest's vectors and of rfactor's partial sums
MIN_PARALLEL = 2  # a parallel loop shorter than this is left serial
BLOCK_TILES = 4   # tiles along the lanes' axis per cache block
ROW_BLOCK_TILES = 8  # tiles along the rows' axis per cache block
# a convolution's cache block spans its whole output row of lanes (by ROW_BLOCK_TILES): its
# input rows then stream in order across the block's tiles. Measured in one process each (Zen 2,
# AVX2, 2 threads, 3x3, 4 x 16 tiles), 4 lane tiles -> the whole row: 1x128x512x512 889 -> 659
# ms, 1x256x256x256 826 -> 665 ms; rows of 128 lanes or fewer within noise (5 %); the row
# block 8 beat 2 on every SD shape (1x512x128x128 1042 vs 1386 ms).
# a tile one panel wide (weight_panels.py: one register of lanes) holds up to PANEL_ROWS rows:
# 11 accumulators, the panel's vector and the broadcast fit AVX2's 16 registers; and its cache
# block's operands (its rows of the left operand, BLOCK_TILES panels, float32 over the whole
# reduction) stay within PANEL_BLOCK_BYTES, half an L2. On AVX2, 154 x 768 -> 768: 7 rows 114
# GFLOP/s, 11 rows 158-163.
PANEL_ROWS = 11
PANEL_BLOCK_BYTES = 512 * 1024
L1_WAYS = 8
# float32 lanes of one vector register per instruction set the llvm target names (its mcpu:
# stages/engine/host_cpu.py); a tile is up to ROWS x two registers. Measured on full-size SD
# kernels (Zen 4, 2 threads): 8 x 32 lanes ran a 320->2560 matmul in 91 ms and a 640->320
# convolution in 260 ms on AVX-512 (4 x 16: 512 and 1318 ms).
REGISTER_LANES = {"x86-64-v4": 16, "x86-64-v3": 8}
# vector registers per instruction set (x86-64 before AVX-512 has 16). A tile's accumulators,
# its operand vectors and the broadcast must all fit (tile_rows): AVX2's 16 take 6 rows of two
# registers, not 8, whose 16 accumulators spilled the operands (Zen 2, 2 threads, 3x3
# convolutions, 8 rows -> a divisor up to 6: 4 rows for SD's 128-512 channels, 5 for 320-1280:
# 1x512x128x128 1168 -> 933 ms, 1x256x256x256 1207 -> 1021 ms, 2x320x64x64 144 -> 118 ms,
# 2x640x32x32 160 -> 143 ms).
REGISTERS = {"x86-64-v4": 32}
MIN_RFACTOR_STEPS = 8  # vector steps per output a reduction needs to run along its lanes


def _extents(infos) -> list[int] | None:
    from tvm import tirx

    out = []
    for it in infos:
        if not isinstance(it.dom, (int, tirx.IntImm)):
            return None
        out.append(int(it.dom))
    return out


def _mcpu(target) -> str:
    return str(target.attrs.get("mcpu", ""))


def register_lanes(target) -> int:
    """float32 lanes of one vector register of the target's instruction set (4 where it names
    none: SSE2, NEON)."""
    return REGISTER_LANES.get(_mcpu(target), 4)


def tile_lanes(target) -> int:
    """The lanes of a tile: two vector registers."""
    return 2 * register_lanes(target)


def tile_rows(target, lanes: int, most: int) -> int:
    """The most rows (up to `most`) of a tile `lanes` wide whose accumulators fit the register
    file beside one operand vector per register of lanes and the broadcast row value."""
    vectors = max(1, lanes // register_lanes(target))
    registers = REGISTERS.get(_mcpu(target), 16)
    return max(1, min(most, (registers - vectors - 1) // vectors))


def _largest_divisor(n: int, candidates) -> int:
    return next((c for c in candidates if n % c == 0), 1)


def make_rules():
    """The rules as dlight CPUScheduleRule instances (tvm is imported here, not at load)."""
    from tvm import s_tir, tirx
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

    def used_vars(expr) -> set:
        return {v.name for v in tirx.analysis.undefined_vars(expr, [])}

    def region_vars(region) -> list[set]:
        """The block iter vars each index of a buffer region uses."""
        return [used_vars(r.min) for r in region.region]

    def parallel_outer(sch, loops) -> None:
        """Fuse the leading loops and run them in parallel."""
        if not loops:
            return
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        extent = sch.get(fused).extent
        if not isinstance(extent, tirx.IntImm) or int(extent) >= MIN_PARALLEL:
            sch.parallel(fused)

    def normalized(rule, func, target):
        """A schedule of func and its blocks in normal form, or None where the rule does not
        apply (another target, a kernel in no normal form: attention's own loops)."""
        if not isinstance(func, tirx.PrimFunc) or not rule.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        return (sch, infos) if infos else None

    def spread(sch, info) -> None:
        """An injective block: its outer loops fused and in parallel, its last loop in lanes
        where the extent allows."""
        loops = sch.get_loops(info.block_rv)
        ext = _extents(info.iters)
        if ext is None or not loops:
            return
        if len(loops) > 1:
            parallel_outer(sch, loops[:-1])
        lanes = _largest_divisor(ext[-1], (LANES, 8, 4))
        if lanes > 1:
            _, li = sch.split(loops[-1], [None, lanes])
            sch.vectorize(li)

    class Tiled(CPUScheduleRule):
        def apply(self, func, target, _tunable):
            try:
                return self.schedule(func, target)
            except Exception:  # noqa: BLE001 (a kernel this rule cannot tile: the next rule's)
                return None

        def schedule(self, func, target):
            found = normalized(self, func, target)
            if found is None:
                return None
            sch, infos = found
            reductions = [b for b in infos if not b.is_injective()]
            if len(reductions) != 1:
                return None
            main = reductions[0]
            kind = main.dom_kind()
            spatial = len(kind) - len(kind.lstrip("S"))
            if spatial == 0 or set(kind[spatial:]) != {"R"}:
                return None
            ext = _extents(main.iters)
            if ext is None:
                return None
            block = sch.get(main.block_rv)
            # producers of the reduction (padding) keep their own nests; every other injective
            # block is inlined into what reads it where it can (a broadcast bias into the
            # epilogue), and the rest, the epilogue, into the tile's write-back
            read_by_main = {r.source.name for r in block.reads}
            producers, consumers = [], []
            for b in infos:
                if b is main:
                    continue
                if {w.source.name for w in sch.get(b.block_rv).writes} & read_by_main:
                    producers.append(b)
                    continue
                try:
                    sch.compute_inline(b.block_rv)
                except Exception:  # noqa: BLE001 (it writes the output, or cannot be inlined)
                    consumers.append(b)
            names = [it.var.name for it in main.iters]
            lane_var = names[spatial - 1]
            reads = [region_vars(r) for r in block.reads]
            # a read whose innermost index uses the lanes' axis together with something else
            # is contiguous along it; one that uses it in an outer index only is strided
            strided = any(any(lane_var in idx for idx in r[:-1]) and lane_var not in r[-1]
                          for r in reads if r)
            if strided:
                return self.rfactor(sch, main, consumers, ext, spatial)
            widest = tile_lanes(target)
            # a weight in panels (weight_panels.py: read [j // L, k, j % L]) is contiguous L
            # lanes at a time: the tile is one panel wide, one vector register (8 x 8 panels
            # ran a 154 x 768 -> 3072 matmul 1.8x as fast as 8 x 16 lanes of W.T on AVX2)
            panels = [int(r.region[-1].min.b) for r in block.reads
                      if isinstance(r.region[-1].min, tirx.FloorMod)
                      and isinstance(r.region[-1].min.b, tirx.IntImm)
                      and lane_var in used_vars(r.region[-1].min)]
            widest = min([widest, *panels])
            lanes = _largest_divisor(ext[spatial - 1], sorted(
                (c for c in {widest, widest // 2, 8, 4} if c <= widest), reverse=True))
            # the reuse axis: a spatial axis absent from the reads that use the lanes' axis
            lane_reads = [set().union(*r) for r in reads if r and lane_var in set().union(*r)]
            row_axis = next((i for i in range(spatial - 2, -1, -1)
                             if ext[i] > 1 and all(names[i] not in r for r in lane_reads)), None)
            # any divisor up to ROWS: CLIP's 77 tokens take 7 rows (only 1 of 8, 4 or 2)
            most = tile_rows(target, lanes, PANEL_ROWS if panels else ROWS)
            row_bytes = 4 * math.prod(ext[spatial:])
            if panels and row_bytes % 4096 == 0:
                # rows a multiple of 4 KiB apart fall in one L1 set: 7 of them and the panel
                # fill its 8 ways (154 x 3072 -> 768: 11 rows 51-68 GFLOP/s, 7 rows 110)
                most = L1_WAYS - 1
            rows = (_largest_divisor(ext[row_axis], range(most, 1, -1))
                    if row_axis is not None else 1)
            row_block = ROW_BLOCK_TILES
            if panels and rows > 1:
                row_block = max(1, (PANEL_BLOCK_BYTES // row_bytes - BLOCK_TILES * lanes) // rows)

            loops = sch.get_loops(main.block_rv)
            s_loops, r_loops = loops[:spatial], loops[spatial:]
            outer, inner = list(s_loops), []
            if rows > 1:
                ro, ri = sch.split(s_loops[row_axis], [None, rows])
                outer[row_axis] = ro
                inner.append(ri)
            lo, li = sch.split(s_loops[spatial - 1], [None, lanes])
            outer[spatial - 1] = lo
            inner.append(li)
            # cache blocks: BLOCK_TILES tiles along the lanes' axis by ROW_BLOCK_TILES along the
            # rows' go outermost; within one, every tile of the block is done at one place of
            # the other axes before the next, so the lane-indexed strip (a convolution's input
            # rows, a matmul's weight columns) and the row block's broadcast operand (its
            # weights, its input rows) stay in L2 (a 512-channel VAE convolution read its whole
            # 134 MB input once per 8 output channels otherwise); a convolution's block spans
            # its whole output row
            def blocked(loop, count, limit):
                size = _largest_divisor(count, range(min(count, limit), 0, -1))
                return sch.split(loop, [None, size]) if 1 < size < count else (None, loop)

            # a windowed read (the lanes' index plus a reduction's: a convolution's input)
            reduced = set(names[spatial:])
            windowed = any(lane_var in idx and idx & reduced for r in reads for idx in r)
            lane_block = ext[spatial - 1] // lanes if windowed else BLOCK_TILES
            jb, jt = blocked(outer[spatial - 1], ext[spatial - 1] // lanes, lane_block)
            rb, rt = (blocked(outer[row_axis], ext[row_axis] // rows, row_block)
                      if rows > 1 else (None, None))
            others = [loop for i, loop in enumerate(outer[:spatial - 1]) if i != row_axis]
            outer = [b for b in (jb, rb) if b is not None] + others + [jt] + (
                [rt] if rt is not None else [])
            sch.reorder(*outer, *r_loops, *inner)
            # the tile's outputs accumulate locally and are written once, with the epilogue
            acc = sch.cache_write(main.block_rv, 0, "local")
            for c in consumers:
                try:
                    sch.reverse_compute_inline(c.block_rv)
                except Exception:  # noqa: BLE001 (an epilogue that cannot be inlined)
                    return None
            sch.reverse_compute_at(acc, outer[-1], preserve_unit_loops=True)
            parallel_outer(sch, outer)
            # NOTE: vectorized before the reduction is split into init and update: the
            # update block alone is no reduction block, and vectorize refuses it
            for b in (main.block_rv, acc):
                loops = sch.get_loops(b)
                if lanes > 1:
                    sch.vectorize(loops[-1])
                if rows > 1 and b is main.block_rv:
                    sch.unroll(loops[-2])
            sch.decompose_reduction(main.block_rv, r_loops[0])
            for p in producers:   # padding: its own parallel, vectorized nest
                spread(sch, p)
            return sch

        def rfactor(self, sch, main, consumers, ext, spatial):
            """Lanes along the reduction: per-lane partial sums (rfactor), summed per output."""
            r_ext = ext[spatial:]
            if len(r_ext) != 1:
                return None
            lanes = _largest_divisor(r_ext[0], (LANES, 8, 4))
            # each output ends with a sum across its lanes: worth it over 8+ vector steps only
            # (measured: K = 32 or 64 ran slower than the plain loop, K = 128 and 256 faster)
            if lanes == 1 or r_ext[0] < MIN_RFACTOR_STEPS * lanes:
                return None
            loops = sch.get_loops(main.block_rv)
            s_loops, (r_loop,) = loops[:spatial], loops[spatial:]
            _, ri = sch.split(r_loop, [None, lanes])
            # rf: (spatial..., reduction outer, lanes) with the lanes innermost; the original
            # block then adds the lanes' partial sums up: (spatial..., lanes)
            rf = sch.rfactor(ri, factor_axis=spatial)
            final = sch.get_loops(main.block_rv)
            sch.compute_at(rf, final[spatial - 1], preserve_unit_loops=True)
            for c in consumers:
                sch.reverse_compute_at(c.block_rv, final[spatial - 1], preserve_unit_loops=True)
            sch.set_scope(rf, 0, "local")
            # compute_at made the rf block's loops in its iters' order (lanes, then the
            # reduction): the lanes go innermost
            lane, red = sch.get_loops(rf)[-2:]
            sch.reorder(red, lane)
            sch.vectorize(lane)
            parallel_outer(sch, final[:spatial])
            sch.decompose_reduction(rf, red)
            return sch

    class Spatial(CPUScheduleRule):
        def apply(self, func, target, _tunable):
            found = normalized(self, func, target)
            if found is None:
                return None
            sch, infos = found
            # an injective block is computed where an injective block reads it: one nest and
            # one pass over memory, not one per op (the VAE's GroupNorm + SiLU: six); never
            # into a reduction, which would compute it once per use
            injective = {sch.get(b.block_rv).name_hint for b in infos if b.is_injective()}
            kept = []
            for b in infos:
                readers = sch.get_consumers(b.block_rv)
                if b.is_injective() and readers and all(
                        sch.get(r).name_hint in injective for r in readers):
                    try:
                        sch.compute_inline(b.block_rv)
                        continue
                    except Exception:  # noqa: BLE001 (it writes an output, or cannot be)
                        pass
                kept.append(b)
            for b in kept:
                kind = b.dom_kind()
                if b.is_injective() and len(sch.get_loops(b.block_rv)) == len(kind):
                    spread(sch, b)
                elif kind.startswith("S"):   # a reduction's leading spatial loops
                    lead = len(kind) - len(kind.lstrip("S"))
                    parallel_outer(sch, sch.get_loops(b.block_rv)[:lead])
            return sch

    return [Tiled(), Spatial()]

