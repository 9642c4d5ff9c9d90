"""Put hand-written WGSL kernel bodies into a webgpu library as it is packed.

TVM's WGSL codegen cannot write some kernels we need (subgroup matrices: stages/passes/
subgroup_matrix_gemm.py). Such a kernel enters the build as a TIR PrimFunc that fixes its
buffers, grid and workgroup, under a name that says what it computes; TVM compiles it like any
other, and `pack_imports` (export_library's fpack_imports hook) then rewrites its shader in the
serialized device module: the bindings TVM declared stay, the entry point is ours. The host
code, the function table and the dispatch are TVM's and untouched, so the page, the verify
harness and the GPU bench load the library as they load any other.

The serialized blob: a u64 byte count of what follows, ..., the key "webgpu", a u64 byte count
of that module, then its function table and its shader map (u64 count; per shader, a u64-length
name and a u64-length WGSL text beginning "//"). A swap rewrites one WGSL text and the two
counts that enclose it.
"""

from __future__ import annotations

import re
import struct

MODULE_KEY = struct.pack("<Q", 6) + b"webgpu"
BINDING = re.compile(r"@group\(0\) @binding\((\d+)\) var<storage, [a-z_]+> (\w+) : array<(\w+)>;")


class SwapError(Exception):
    """The packed library is not laid out as this module expects (a TVM change)."""


def _u64(blob: bytes, at: int) -> int:
    return struct.unpack_from("<Q", blob, at)[0]


def shaders(blob: bytes) -> dict[str, tuple[int, int]]:
    """Each shader's name -> (offset, length) of its WGSL text in the blob."""
    found = {}
    for hit in re.finditer(rb"(\w+_kernel)(?=.{8}//-)", blob, re.S):
        name = hit.group(1)
        at = hit.start()
        if at < 8 or _u64(blob, at - 8) != len(name):
            continue
        start = hit.end() + 8
        found[name.decode()] = (start, _u64(blob, hit.end()))
    return found


def rewrite(source: str, name: str, entry_point, enables: tuple[str, ...],
            directives: tuple[str, ...], types: dict[str, str] | None = None) -> str:
    """TVM's shader with its entry point replaced: `entry_point(name, buffers)` writes ours, where
    buffers maps each PrimFunc buffer parameter the kernel uses to its WGSL variable (TVM binds
    them in its own order, not the parameters', and drops the unused ones). `types` rebinds
    parameters as arrays of another element type (a GEMM that loads its float16 operands 16
    bytes at a time binds them as vec4<u32>); the binding itself, hence the host side, is TVM's."""
    head, sep, _ = source.partition("\n@compute")
    if not sep:
        raise SwapError(f"wgsl_swap: no @compute entry point in {name}")
    buffers = {}
    for m in BINDING.finditer(head):
        var = m.group(2)
        if not var.endswith("_ptr"):
            raise SwapError(f"wgsl_swap: binding {var} of {name} is not named <param>_ptr")
        buffers[var[:-len("_ptr")]] = var
    for param, ty in (types or {}).items():
        if param not in buffers:
            raise SwapError(f"wgsl_swap: {name} binds no buffer {param}")
        head = re.sub(rf"(var<storage, [a-z_]+> {buffers[param]} : array<)\w+(>;)",
                      rf"\g<1>{ty}\g<2>", head)
    lines = [ln for ln in head.splitlines() if not ln.startswith("enable ")]
    # NOTE: after TVM's leading comment ("//---- Function: name"), which `shaders` looks for
    first = next(i for i, ln in enumerate(lines + [""]) if not ln.startswith("//"))
    top = [f"enable {e};" for e in enables] + list(directives)
    return "\n".join(lines[:first] + top + lines[first:]) + "\n" + entry_point(name, buffers)


def swap(blob: bytes, bodies) -> tuple[bytes, list[str]]:
    """The blob with every shader `bodies(name, source)` returns a new text for replaced; the
    names replaced. `bodies` returns None to keep a shader."""
    at = blob.find(MODULE_KEY)
    if at < 0 or blob.find(MODULE_KEY, at + 1) >= 0:
        raise SwapError("wgsl_swap: expected one webgpu module in the packed library")
    mod_len_at = at + len(MODULE_KEY)
    mod_start = mod_len_at + 8
    mod_end = mod_start + _u64(blob, mod_len_at)
    if _u64(blob, 0) != len(blob) - 8 or mod_end > len(blob):
        raise SwapError("wgsl_swap: the packed library's byte counts do not add up")
    module = blob[mod_start:mod_end]
    done = []
    for name, (start, length) in sorted(shaders(module).items(), key=lambda kv: -kv[1][0]):
        new = bodies(name, module[start:start + length].decode())
        if new is None:
            continue
        data = new.encode()
        module = module[:start - 8] + struct.pack("<Q", len(data)) + data + module[start + length:]
        done.append(name)
    out = blob[:mod_len_at] + struct.pack("<Q", len(module)) + module + blob[mod_end:]
    return struct.pack("<Q", len(out) - 8) + out[8:], sorted(done)


def _host_target(mod) -> str:
    """The LLVM target string of the host module (what TVM's own packing writes for)."""
    todo = [mod]
    while todo:
        m = todo.pop()
        if m.kind == "llvm":
            return m.get_function("_get_target_string")()
        todo.extend(m.imports)
    raise SwapError("wgsl_swap: no LLVM host module to pack the device code for")


def pack_imports(wgsl_bodies):
    """An export_library fpack_imports: TVM's packing (ModulePackImportsToTensor, then
    codegen_blob for the host module's LLVM target: the object TVM itself writes) with the
    shaders swapped."""
    import os

    import tvm_ffi

    def pack(mod, is_system_lib, prefix, workspace_dir):
        blob = bytes(tvm_ffi.get_global_func("runtime.ModulePackImportsToTensor")(mod).numpy())
        blob, _ = swap(blob, wgsl_bodies)
        llvm_target = _host_target(mod)
        obj = tvm_ffi.get_global_func("codegen.codegen_blob")(blob, is_system_lib, llvm_target,
                                                              prefix)
        path = os.path.join(workspace_dir, f"{prefix}devc.o")
        obj.write_to_file(path)
        return path

    return pack
