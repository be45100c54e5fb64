"""`mt3x-export --checkpoint DIR --out BUNDLE`: a trained checkpoint -> an inference bundle.

    mt3x-export --checkpoint runs/mt3 --out bundles/mt3
    mt3x-export --checkpoint runs/sep/unet --out bundles/unet --dtype bfloat16
    mt3x-export --checkpoint runs/mt3 --out bundles/mt3_cpu --platforms cpu --step 20000

The kind is detected from the directory: first the run kinds that plugins register in
`mt3x.plugins` (the separation package's: a directory holding `separator.json` is a separator run
-> a 'separator' bundle; without that package installed such a directory is refused naming it);
then a train_mt3 work directory (holding `checkpoints/`), its `checkpoints/` folder or one
`checkpoints/<step>` is an MT3 run (-> an 'mt3' bundle: `mt3x.bundles.mt3_export`). The bundle (bundle.json, params.safetensors,
<function>.jax_exported) runs with `mt3x-transcribe --bundle` / `mt3x-separate --bundle` without
the model code. `--dtype bfloat16` halves the parameter file; the functions still compute in
float32 (from the rounded weights). Prints the bundle's path, kind, parameter count, stored
dtype, sizes and the time taken; a bad directory prints `error: ...` and exits 2.
"""

from __future__ import annotations

from mt3x.util.quiet import cli_args, quiet_startup

quiet_startup()  # first: TensorFlow, pydub and Orbax stay quiet only if set before they load

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mt3x.bundles.mt3_export import export_mt3_bundle
from mt3x.bundles.mt3_runtime import MT3_KIND
from mt3x.errors import Mt3xError
from mt3x.util.compilation_cache import enable_compilation_cache
from mt3x.util.files import check_output_path
from mt3x.models import Mt3Model
from mt3x.plugins import Registry, installed_registry
from mt3x.transcription.checkpoint import resolve_checkpoint

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MT3_ONLY_OPTIONS = ("max_decode_length", "vocab", "model_config")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt3x-export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="separator run directory (separator.json) or train_mt3 workdir "
                             "(checkpoints/), or its checkpoints/<step>")
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="stored parameter dtype (bfloat16: half the size)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default latest)")
    parser.add_argument("--platforms", default="cpu,cuda,tpu",
                        help="comma-separated lowering platforms (cpu, cuda, rocm, tpu)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    mt3 = parser.add_argument_group("MT3 checkpoints only")
    mt3.add_argument("--max_decode_length", type=int, default=None,
                     help="tokens per segment of the exported decoder (default: the model's)")
    mt3.add_argument("--vocab", default=None, choices=("mt3", "ismir2021"),
                     help="codec (default: the one stored with the checkpoint, else mt3)")
    mt3.add_argument("--model_config", default=None,
                     help="network config name when the checkpoint has no mt3x_model.json")
    return parser


def detect_kind(checkpoint: Path, registry: Registry | None = None) -> str:
    """A plugin's run kind ('separator': its marker file is present) or 'mt3' (a train_mt3
    checkpoint path); `registry` defaults to the installed plugins.

    Raises Mt3xError naming the path when it is neither, or when it is the run of a known kind
    whose package is not installed.
    """
    registry = installed_registry() if registry is None else registry
    path = checkpoint.absolute()
    markers = " or ".join(registry.markers())
    if not path.exists():
        raise Mt3xError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise Mt3xError(f"checkpoint {path} is a file; expected a run directory holding "
                        f"{markers} or a train_mt3 work directory (holding checkpoints/)")
    exporter = registry.exporter_for(path)
    if exporter is not None:
        return exporter.kind
    try:
        resolve_checkpoint(path)
    except Mt3xError:
        raise Mt3xError(f"{path} is not a checkpoint: it holds no {markers} (a plugin's run "
                        "directory, e.g. a separator's) and no checkpoints/ (train_mt3 work "
                        "directory)") from None
    return MT3_KIND


def _platforms(value: str) -> tuple[str, ...]:
    platforms = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = sorted(set(platforms) - {"cpu", "cuda", "rocm", "tpu"})
    if unknown or not platforms:
        raise Mt3xError(f"--platforms {value!r}: expected a comma-separated list of cpu, cuda, "
                        "rocm, tpu")
    return platforms


def export(args: argparse.Namespace, registry: Registry | None = None) -> Path:
    """Writes the bundle described by parsed arguments; returns its folder."""
    registry = installed_registry() if registry is None else registry
    kind = detect_kind(args.checkpoint, registry)
    platforms = _platforms(args.platforms)
    check_output_path(args.out)
    if kind != MT3_KIND:
        given = [f"--{name}" for name in MT3_ONLY_OPTIONS if getattr(args, name) is not None]
        if given:
            raise Mt3xError(f"{' '.join(given)} apply to MT3 checkpoints only; "
                            f"{args.checkpoint} is a {kind} run directory")
        return registry.bundle_exporters[kind].export(
            args.checkpoint, args.out, dtype=args.dtype, step=args.step, platforms=platforms,
            overwrite=args.overwrite)
    model = None
    if args.model_config:
        model = Mt3Model(args.model_config)
    return export_mt3_bundle(args.checkpoint, args.out, dtype=args.dtype, step=args.step,
                             model=model, vocab=args.vocab,
                             max_decode_length=args.max_decode_length, platforms=platforms,
                             overwrite=args.overwrite)


def describe_bundle(path: Path) -> list[str]:
    """Lines: kind, parameter count, stored dtype, total size and each file's size (MiB)."""
    manifest = json.loads((path / "bundle.json").read_text())
    files = sorted(p for p in path.iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    params = manifest.get("params", {})
    lines = [f"bundle {path}",
             f"  kind {manifest.get('kind')}, {int(params.get('size', 0)):,} parameters in "
             f"{params.get('count')} arrays, stored as {manifest.get('stored_dtype')}, "
             f"step {manifest.get('source', {}).get('step')}",
             f"  {total / 2 ** 20:.2f} MiB in {len(files)} files:"]
    lines += [f"    {p.name}: {p.stat().st_size / 2 ** 20:.3f} MiB" for p in files]
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = cli_args(argv)
    try:
        args = build_parser().parse_args(argv)
        enable_compilation_cache()
        start = time.perf_counter()
        path = export(args)
        for line in describe_bundle(path):
            print(line)
        print(f"  exported in {time.perf_counter() - start:.1f} s")
        return 0
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:        # argparse usage errors (already printed)
        return int(exit_.code or 0)


if __name__ == "__main__":
    sys.exit(main())
