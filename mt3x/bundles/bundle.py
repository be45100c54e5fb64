"""The bundle format: a folder with a manifest, parameters and `jax.export`-ed functions.

```
BUNDLE/
  bundle.json              {"format": "mt3x-bundle/1", "kind": "mt3" | "separator", "params": {...},
                            "functions": {name: {"file", "sha256", "platforms", "inputs",
                            "outputs"}}, "source": {...}, plus the kind's own configuration}
  params.safetensors       parameters; names are '/'-joined tree paths; float32 or bfloat16
  <name>.jax_exported      `jax.export.Exported.serialize()` of each function
```
Every function takes the parameter tree as its first argument, in the stored dtype, and upcasts
floating parameters to float32 inside (so a bfloat16 bundle computes exactly what the model does
with bfloat16-rounded weights). A bundle is written to a temporary sibling folder and renamed,
so a reader never sees a half-written one. This module imports jax and numpy only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from mt3x.bundles.safetensors import SafetensorsError, parse_safetensors, write_safetensors
from mt3x.errors import Mt3xError
from mt3x.util.files import apply_umask, resolve_inside
from mt3x.util.trees import flatten_nested, unflatten_nested

BUNDLE_FORMAT = "mt3x-bundle/1"
MANIFEST_FILE = "bundle.json"
PARAMS_FILE = "params.safetensors"
FUNCTION_SUFFIX = ".jax_exported"
PARAM_DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
#: Lowered for all three by default; a bundle runs on any platform it was lowered for.
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")


class BundleError(Mt3xError):
    """A bundle that cannot be written or read (names the folder or file and the problem)."""


@dataclasses.dataclass
class Bundle:
    """A bundle read from disk.

    path: the folder. manifest: bundle.json. params: nested dict of numpy arrays (stored dtype).
    functions: name -> `jax.export.Exported` (call with `.call(params, ...)`).
    """

    path: Path
    manifest: dict[str, Any]
    params: dict[str, Any]
    functions: dict[str, jax.export.Exported]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])


# ---- parameter trees ('/'-joined names in params.safetensors) ----------------------------------
def cast_params(tree: Any, dtype: str) -> Any:
    """Floating leaves cast to 'float32' or 'bfloat16' (numpy, round to nearest even)."""
    if dtype not in PARAM_DTYPES:
        raise BundleError(f"parameter dtype {dtype!r}: expected one of {sorted(PARAM_DTYPES)}")
    target = PARAM_DTYPES[dtype]

    def cast(leaf: Any) -> np.ndarray:
        leaf = np.asarray(leaf)
        floating = np.issubdtype(leaf.dtype, np.floating) or leaf.dtype == PARAM_DTYPES["bfloat16"]
        return leaf.astype(target) if floating else leaf
    return jax.tree.map(cast, tree)


def upcast_params(tree: Any) -> Any:
    """Inside an exported function: floating leaves -> float32 (bfloat16 storage, f32 math)."""
    return jax.tree.map(lambda leaf: leaf.astype(jnp.float32)
                        if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf, tree)


def param_specs(tree: Any) -> Any:
    """`jax.ShapeDtypeStruct` per leaf (the exported functions' parameter signature)."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf), np.asarray(leaf).dtype),
                        tree)


# ---- exporting -------------------------------------------------------------------------------
def export_function(fn: Callable[..., Any], arg_specs: Sequence[Any],
                    platforms: Sequence[str] = DEFAULT_PLATFORMS) -> jax.export.Exported:
    """`jax.export` of `jax.jit(fn)` for `arg_specs` (ShapeDtypeStructs, possibly symbolic)."""
    unknown = sorted(set(platforms) - {"cpu", "cuda", "rocm", "tpu"})
    if unknown or not platforms:
        raise BundleError(f"platforms {list(platforms)}: expected some of cpu, cuda, rocm, tpu")
    return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*arg_specs)


def describe_avals(avals: Sequence[Any]) -> list[str]:
    """['float32[b,256,128]', ...]: shapes (symbolic names kept) and dtypes, for the manifest."""
    return [f"{aval.dtype}[{','.join(str(d) for d in aval.shape)}]" for aval in avals]


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _read_checked(file: Path, expected_sha256: Any) -> bytes:
    """The bytes of a bundle file whose SHA-256 must match the manifest's."""
    if not file.is_file():
        raise BundleError(f"{file} is missing")
    blob = file.read_bytes()
    if _sha256(blob) != expected_sha256:
        raise BundleError(f"{file}: checksum does not match {MANIFEST_FILE} (file corrupt, "
                          "truncated or replaced)")
    return blob


def write_bundle(out: str | os.PathLike, *, kind: str, config: Mapping[str, Any],
                 params: Mapping[str, Any], functions: Mapping[str, jax.export.Exported],
                 source: Mapping[str, Any], overwrite: bool = False) -> Path:
    """Writes a bundle folder atomically (temporary sibling + rename); returns its path.

    Args:
      out: the bundle folder; must not exist unless `overwrite`.
      kind: 'mt3' or 'separator'.
      config: the kind's configuration (merged into bundle.json).
      params: nested dict of numpy arrays, already in the stored dtype.
      functions: name -> Exported.
      source: where the bundle came from (checkpoint path, step, ...).
    """
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        apply_umask(staging)  # mkdtemp makes it 0700
        try:
            flat = {k: np.asarray(v) for k, v in flatten_nested(params, "/").items()}
        except ValueError as err:
            raise BundleError(f"parameters: {err}") from None
        dtypes = sorted({str(a.dtype) for a in flat.values()})
        write_safetensors(staging / PARAMS_FILE, flat, {"format": BUNDLE_FORMAT, "kind": kind})
        entries = {}
        for name, exported in sorted(functions.items()):
            file = staging / f"{name}{FUNCTION_SUFFIX}"
            blob = exported.serialize()
            file.write_bytes(blob)
            entries[name] = {"file": file.name, "sha256": _sha256(blob),
                             "platforms": list(exported.platforms),
                             "inputs": describe_avals(exported.in_avals),
                             "outputs": describe_avals(exported.out_avals)}
        manifest = {"format": BUNDLE_FORMAT, "kind": kind, **dict(config),
                    "params": {"file": PARAMS_FILE, "dtypes": dtypes, "count": len(flat),
                               "size": int(sum(a.size for a in flat.values())),
                               "bytes": (staging / PARAMS_FILE).stat().st_size,
                               "sha256": _sha256((staging / PARAMS_FILE).read_bytes())},
                    "functions": entries, "source": dict(source),
                    "jax_version": jax.__version__}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


# ---- reading -----------------------------------------------------------------------------------
def read_manifest(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """bundle.json of a bundle folder, checked for format and (if given) kind."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"bundle {path} does not exist")
    manifest_path = path / MANIFEST_FILE
    if not path.is_dir() or not manifest_path.is_file():
        raise BundleError(f"{path} is not an mt3x bundle (no {MANIFEST_FILE}); write one with "
                          "mt3x-export --checkpoint DIR --out BUNDLE")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{manifest_path}: unreadable manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"{manifest_path}: format {found!r} is not {BUNDLE_FORMAT!r}")
    if kind is not None and manifest.get("kind") != kind:
        raise BundleError(f"{path} holds a {manifest.get('kind')!r} bundle, not a {kind!r} one")
    for key in ("params", "functions"):
        if not isinstance(manifest.get(key), dict):
            raise BundleError(f"{manifest_path}: field {key!r} is missing or malformed")
    for name, entry in manifest["functions"].items():
        if isinstance(entry, dict):
            try:  # a function file named in the manifest must stay inside the bundle
                resolve_inside(path, str(entry.get("file")), source=str(manifest_path),
                               field=f"functions.{name}.file")
            except Mt3xError as err:
                raise BundleError(str(err)) from None
    return manifest


def read_bundle(path: str | os.PathLike, kind: str | None = None,
                function_names: Sequence[str] | None = None) -> Bundle:
    """Reads and checks a bundle: manifest, parameter file checksum, function files.

    Args:
      path: the bundle folder.
      kind: the kind expected ('mt3' / 'separator'), or None for any.
      function_names: functions to load (default: all in the manifest).

    Raises:
      BundleError: not a bundle, other kind, missing/corrupt/modified file (checksums), or a
        function that was not lowered for this machine's platform; each names the path.
    """
    path = Path(path).absolute()
    manifest = read_manifest(path, kind)
    params_path = path / PARAMS_FILE
    try:
        flat, _ = parse_safetensors(_read_checked(params_path, manifest["params"].get("sha256")),
                                    params_path)
    except SafetensorsError as err:
        raise BundleError(str(err)) from None
    platform = jax.default_backend()
    functions = {}
    names = function_names if function_names is not None else sorted(manifest["functions"])
    for name in names:
        entry = manifest["functions"].get(name)
        if not isinstance(entry, dict):
            raise BundleError(f"{path / MANIFEST_FILE}: no function {name!r}; it has "
                              f"{sorted(manifest['functions'])}")
        file = path / str(entry.get("file"))  # checked by read_manifest to stay in `path`
        blob = _read_checked(file, entry.get("sha256"))
        if platform not in entry.get("platforms", ()):
            raise BundleError(f"{file} was lowered for {entry.get('platforms')}, not for this "
                              f"machine's {platform!r}; export again with --platforms {platform}")
        try:
            functions[name] = jax.export.deserialize(bytearray(blob))
        except Exception as err:  # noqa: BLE001 - any deserialisation failure means a bad file
            raise BundleError(f"{file}: cannot deserialise the exported function ({err})") from None
    return Bundle(path, manifest, unflatten_nested(flat, "/"), functions)
