"""Put a built model's webgpu files into .gpu/ the way the device calls carry them (64 MiB).

    python bench/gpu/stage_payload.py [--model sd-v1-5] [--flavors -fp16-sm]

Writes two folders from dist/<model>/webgpu/ (emitted; for the second, the kept variants
verified and the model-level stages built: the script names the doit command when not;
the page's bundle stays out: time_to_image.mjs runs web/src itself):
  .gpu/builds/webgpu/<unet variant>/   each UNet variant's library (xz) and tensor-cache.json:
                                       the UNet step table (run_on_device.sh BUILD_DIRS...)
  .gpu/tti/<model>/                    the model directory as the package stage writes it, for
                                       the variants whose name ends with one of --flavors only
                                       (fill_params.py would otherwise draw every variant's
                                       3.4 GB), without shards (*.bin), libraries and large
                                       files xz'd: for TTI_DIST (time to image)
Both are replaced whole. Prints what each holds and its size.
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
XZ_OVER = 256 << 10      # model-level files larger than this travel xz'd (run_on_device.sh unxz's)


def _xz(src: Path, dst: Path) -> None:
    dst.write_bytes(lzma.compress(src.read_bytes(), preset=9))


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def builds(dist: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    for variant in sorted(p.name for p in dist.iterdir() if p.name.startswith("unet")):
        dst = out / variant
        (dst / "params").mkdir(parents=True)
        _xz(dist / variant / f"{variant}.wasm", dst / f"{variant}.wasm.xz")
        shutil.copy(dist / variant / "params" / "tensor-cache.json", dst / "params")
    print(f"{out.relative_to(REPO)}: {sorted(p.name for p in out.iterdir())}, "
          f"{_size(out) / 2**20:.1f} MiB")


def tti(model: str, out: Path, flavors: tuple[str, ...]) -> None:
    """The package stage's own run() over the variants named by `flavors` alone (their
    verify.json may say "not run": lavapipe has no subgroup matrices), into `out`, with each
    kept variant's files but its shards, libraries xz'd."""
    from stages.engine import config, dag
    from stages import package

    cfg = config.load(model, "webgpu", None)
    keep = [v for v in cfg.variants if v.endswith(flavors)]
    s = dag.spec(cfg, "package")
    inputs = {n: p for n, p in s.inputs.items()
              if "/" not in n or n.startswith("page/") or n.split("/")[0] in keep}
    missing = sorted(str(p.relative_to(REPO)) for p in inputs.values() if not p.is_file())
    if not keep or missing:
        sys.exit(f"error: {model}'s {flavors} variants are not built ({missing[:3]}...); fix: "
                 f"doit {' '.join(f'verify:{v}' for v in keep)} tokenizer noise_scheduler "
                 f"sampler_tables bundle model={model} target=webgpu")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    outputs = {n: out / p.name for n, p in s.outputs.items()}
    package.run(inputs, outputs, {**s.config, "variants": keep})
    for name, path in outputs.items():       # the tokenizer (3.6 MB), the sampler tables
        if name != "index" and path.stat().st_size > XZ_OVER:
            _xz(path, path.with_name(path.name + ".xz"))
            path.unlink()
    dist = s.outputs["index"].parent
    # NOTE: not the page's bundle (4.9 MB, over the carry limit): time_to_image.mjs runs web/src
    for v in keep:
        for src in sorted((dist / v).rglob("*")):
            if src.is_file() and src.suffix != ".bin":
                dst = out / v / src.relative_to(dist / v)
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.suffix == ".wasm":
                    _xz(src, dst.with_name(dst.name + ".xz"))
                else:
                    shutil.copy(src, dst)
    print(f"{out.relative_to(REPO)}: variants {keep}, {_size(out) / 2**20:.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sd-v1-5")
    ap.add_argument("--flavors", nargs="+", default=["-fp16-sm"])
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    builds(REPO / "dist" / args.model / "webgpu", REPO / ".gpu" / "builds" / "webgpu")
    tti(args.model, REPO / ".gpu" / "tti" / args.model, tuple(args.flavors))


if __name__ == "__main__":
    main()
