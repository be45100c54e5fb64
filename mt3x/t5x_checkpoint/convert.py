"""Import t5x checkpoints into mt3x checkpoints and export ours to the legacy t5x layout.

```
open_t5x_checkpoint(src, step=None, backend='auto') -> T5xSource      # legacy or Orbax layout
load_t5x_params(src, config='auto', ...) -> (params, config_name, T5Config, ImportReport)
import_t5x_checkpoint(src, dst, config='auto', ...) -> ImportReport   # writes our checkpoint
read_mt3x_params(checkpoint, step=None) -> (params, step)             # our Orbax checkpoint
export_t5x_checkpoint(checkpoint, out, dtype='float32', ...) -> ExportResult  # OUT/checkpoint_N
```
An imported checkpoint is a run directory, as `train_mt3` writes one:
```
DST/checkpoints/0/...        mt3x.trainer.Checkpointer: a full TrainState at step 0 (params,
                             fresh `adafactor_mt3` state, PRNG key)
DST/mt3x_model.json          the network (config, vocabulary) for inference and fine-tuning
DST/t5x_import_report.json   what was imported
```
so `train(init_params_from=DST, ...)` fine-tunes from it with any optimizer and
`train(workdir=DST)` resumes it with MT3's optimizer.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from mt3x.util.files import atomic_path
from mt3x.models import T5Config
from mt3x.t5x_checkpoint import legacy, orbax_layout
from mt3x.t5x_checkpoint.config_option import ConfigRequest, parse_config_option, resolve_config
from mt3x.t5x_checkpoint.errors import T5xCheckpointError
from mt3x.t5x_checkpoint.mapping import (TARGET_PREFIX, ImportReport, check_shapes,
                                         expected_param_shapes, raise_unless_ok,
                                         to_param_tree, unflatten_params)

REPORT_FILE = "t5x_import_report.json"
CHECKPOINTS_DIR = "checkpoints"
EXPORT_DTYPES = ("float32", "bfloat16")
_STEP_DIR = re.compile(r"^checkpoint_(\d+)$")
Shape = tuple[int, ...]


@dataclasses.dataclass
class T5xSource:
    """An opened t5x checkpoint (one step).

    path: the step directory; layout: 'legacy' or 'orbax'; shapes: dotted name -> shape
    (None when only reading tells); storage: dotted name -> 'inline' | 'zarr' | 'orbax';
    load: names -> {name: numpy array}.
    """

    path: Path
    layout: str
    shapes: dict[str, Shape | None]
    storage: dict[str, str]
    load: Callable[[Iterable[str]], dict[str, np.ndarray]]

    def step(self) -> int | None:
        """The 'state.step' value, when the checkpoint has one."""
        if "state.step" not in self.shapes:
            return None
        return int(np.asarray(self.load(["state.step"])["state.step"]).reshape(()))


def _open_legacy(directory: Path, backend: str) -> T5xSource:
    ckpt = legacy.read_legacy_checkpoint(directory, backend=backend)
    return T5xSource(path=directory, layout="legacy",
                     shapes={n: leaf.shape for n, leaf in ckpt.leaves.items()},
                     storage={n: leaf.storage for n, leaf in ckpt.leaves.items()},
                     load=lambda names: {n: ckpt.leaves[n].load() for n in names})


def _open_orbax(step_dir: Path, state_dir: Path) -> T5xSource:
    shapes = {n: s for n, (s, _) in orbax_layout.read_orbax_shapes(state_dir).items()}
    cache: dict[str, np.ndarray] = {}

    def load(names: Iterable[str]) -> dict[str, np.ndarray]:
        if not cache:
            cache.update(orbax_layout.read_orbax_arrays(state_dir))
        return {n: cache[n] for n in names}

    return T5xSource(path=step_dir, layout="orbax", shapes=dict(shapes),
                     storage={n: "orbax" for n in shapes}, load=load)


def open_t5x_checkpoint(src: str | Path, *, step: int | None = None,
                        backend: str = "auto") -> T5xSource:
    """Opens a t5x checkpoint: a legacy step directory (msgpack `checkpoint` + zarr folders) or
    its `checkpoint` file, an Orbax step directory (`checkpoint_<step>/state/_METADATA`) or its
    `state` folder, or a t5x model directory of `checkpoint_<step>` folders (`step` or latest).

    Raises:
      T5xCheckpointError: `src` is none of these (names it and what it holds).
    """
    src = Path(src).absolute()
    if not src.exists():
        raise T5xCheckpointError(f"t5x checkpoint {src} does not exist")
    if src.is_file():
        if src.name != legacy.CHECKPOINT_FILE:
            raise T5xCheckpointError(f"{src} is a file; expected a t5x checkpoint directory or "
                                     f"its msgpack file named {legacy.CHECKPOINT_FILE!r}")
        src = src.parent
    state_dir = orbax_layout.find_state_dir(src)
    if state_dir is not None:
        return _open_orbax(src, state_dir)
    if (src / legacy.CHECKPOINT_FILE).is_file():
        return _open_legacy(src, backend)
    steps = {int(m.group(1)): d for d in src.iterdir()
             if d.is_dir() and (m := _STEP_DIR.match(d.name))}
    if steps:
        chosen = max(steps) if step is None else step
        if chosen not in steps:
            raise T5xCheckpointError(f"{src} has no checkpoint_{chosen}; it has steps "
                                     f"{sorted(steps)}")
        inner = steps[chosen]
        if orbax_layout.find_state_dir(inner) is None and \
                not (inner / legacy.CHECKPOINT_FILE).is_file():
            raise T5xCheckpointError(f"{inner} is neither a legacy t5x checkpoint (no msgpack "
                                     "'checkpoint') nor an Orbax one (no state/_METADATA)")
        return open_t5x_checkpoint(inner, backend=backend)
    listing = sorted(p.name for p in src.iterdir())[:6]
    raise T5xCheckpointError(
        f"{src} is not a t5x checkpoint: expected a msgpack file 'checkpoint' (legacy t5x), "
        f"'state/_METADATA' (t5x Orbax) or checkpoint_<step> folders; it holds {listing}")


def _resolve_config(config: str | ConfigRequest | T5Config, shapes: Mapping[str, Shape],
                    src: Path) -> tuple[str, T5Config]:
    if isinstance(config, T5Config):
        return "custom", config
    request = config if isinstance(config, ConfigRequest) else parse_config_option(config)
    return resolve_config(request, shapes, src)


def _fitting_config_hint(shapes: Mapping[str, Shape], src: Path) -> str:
    """'; its shapes fit config X' when a named config fits, else ''."""
    try:
        fits = resolve_config(ConfigRequest(), shapes, src)[0]
    except T5xCheckpointError:
        return ""
    return f"; its shapes fit config {fits!r}" if fits not in ("inferred", "custom") else ""


def load_t5x_params(src: str | Path, *, config: str | ConfigRequest | T5Config = "auto",
                    step: int | None = None, backend: str = "auto"
                    ) -> tuple[dict[str, Any], str, T5Config, ImportReport]:
    """Reads a t5x checkpoint's parameters onto our tree (nested dict of float32 numpy).

    Args:
      src: see `open_t5x_checkpoint`.
      config: a T5Config, a ConfigRequest or a --config string: 'auto' (a named config whose
        shapes all match, else sizes from the shapes with the head count from t5x's
        config.gin), a name of `mt3x.models.CONFIGS`, or sizes such as 'heads=8' or
        'mt3,heads=8' (see `mt3x.t5x_checkpoint.config_option`).
      step: which checkpoint_<step> of a model directory (default the latest).
      backend: zarr reader, 'auto' | 'tensorstore' | 'numpy'.

    Returns:
      (params, config name, config, report). Optimizer state is reported as skipped.

    Raises:
      T5xCheckpointError: unreadable checkpoint, or arrays missing, extra or mis-shaped for the
        config (the message lists each by its dotted t5x name with expected and found shapes).
    """
    if isinstance(config, str):
        config = parse_config_option(config)  # a bad --config fails before any reading
    source = open_t5x_checkpoint(src, step=step, backend=backend)
    unknown = [n for n, s in source.shapes.items() if s is None and n.startswith(TARGET_PREFIX)]
    for name, array in source.load(unknown).items():
        source.shapes[name] = tuple(array.shape)
    found = {n[len(TARGET_PREFIX):]: tuple(s) for n, s in source.shapes.items()
             if n.startswith(TARGET_PREFIX) and s is not None}
    if not found:
        raise T5xCheckpointError(f"t5x checkpoint {source.path} holds no parameters "
                                 f"('{TARGET_PREFIX}*' arrays); it has {sorted(source.shapes)[:5]}")
    name, cfg = _resolve_config(config, found, source.path)
    expected = expected_param_shapes(cfg)
    report = ImportReport(source=str(source.path), layout=source.layout, config_name=name)
    report.skipped = {n: (tuple(s) if s is not None else None)  # type: ignore[misc]
                      for n, s in source.shapes.items() if not n.startswith(TARGET_PREFIX)}
    check_shapes(found, expected, report)
    hint = ""
    if not report.ok and config != ConfigRequest():
        hint = _fitting_config_hint(found, source.path)
    raise_unless_ok(report, hint)
    report.step = source.step()
    report.storage = {}
    for n in expected:
        kind = source.storage[TARGET_PREFIX + n]
        report.storage[kind] = report.storage.get(kind, 0) + 1
    arrays = source.load([TARGET_PREFIX + n for n in expected])
    params = to_param_tree({n[len(TARGET_PREFIX):]: a for n, a in arrays.items()}, expected,
                           report)
    return params, name, cfg, report


def _fresh_train_state(params: Mapping[str, Any], seed: int) -> Any:
    """A step-0 TrainState around `params` with MT3's Adafactor state (fine-tuning start)."""
    from mt3x.trainer import TrainState, adafactor_mt3

    device_params = jax.tree.map(jnp.asarray, params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=device_params,
                      opt_state=adafactor_mt3().init(device_params),
                      rng=jnp.asarray(jax.random.key_data(jax.random.key(seed)), jnp.uint32),
                      nonfinite_steps=jnp.zeros((), jnp.int32))


def model_spec_for(config: T5Config) -> dict[str, Any] | None:
    """The `mt3x_model.json` contents `train_mt3` writes for an MT3 network of `config` (the
    codec vocabulary chosen by the logit width), or None when no vocabulary has that width."""
    from mt3x import codec
    from mt3x.models import Mt3Model
    from mt3x.transcription.checkpoint import model_spec  # the one writer of the format

    vocabs = [name for name in ("mt3", "ismir2021")
              if codec.get_config(name).vocabulary.num_embeddings == config.vocab_size]
    return model_spec(Mt3Model(config), vocabs[0]) if vocabs else None


def _refuse_existing(path: Path, what: str) -> None:
    if path.exists() and not path.is_dir():
        raise T5xCheckpointError(f"{what} {path} exists and is a file; expected a directory")
    if path.is_dir() and any(path.iterdir()):
        raise T5xCheckpointError(f"{what} {path} exists and is not empty; choose another "
                                 "path or pass --overwrite")


def write_mt3x_params_checkpoint(dst: str | Path, params: Mapping[str, Any], *,
                                 meta: Mapping[str, Any], report: Mapping[str, Any] | None = None,
                                 model_spec: Mapping[str, Any] | None = None,
                                 overwrite: bool = False, seed: int = 0) -> Path:
    """Writes `params` atomically as an mt3x run directory `dst`: `checkpoints/0` (step 0),
    `mt3x_model.json` (`model_spec`, when given) and `t5x_import_report.json` (`report`).

    Raises:
      T5xCheckpointError: `dst` is a file, or exists and is not empty and `overwrite` is False.
    """
    from mt3x.trainer import Checkpointer, CheckpointOptions
    from mt3x.transcription.checkpoint import MODEL_SPEC_FILE

    dst = Path(dst).absolute()
    if not overwrite or not dst.is_dir():
        _refuse_existing(dst, "destination")
    with atomic_path(dst, is_dir=True) as tmp:
        checkpointer = Checkpointer(tmp / CHECKPOINTS_DIR, CheckpointOptions(async_save=False))
        try:
            checkpointer.save(_fresh_train_state(params, seed), data_state={}, meta=dict(meta))
            checkpointer.wait()
        finally:
            checkpointer.close()
        if report is not None:
            (tmp / REPORT_FILE).write_text(json.dumps(report, indent=1, sort_keys=True))
        if model_spec is not None:
            (tmp / MODEL_SPEC_FILE).write_text(json.dumps(model_spec, indent=1) + "\n")
    return dst


def import_t5x_checkpoint(src: str | Path, dst: str | Path, *,
                          config: str | ConfigRequest | T5Config = "auto",
                          step: int | None = None, backend: str = "auto",
                          overwrite: bool = False, seed: int = 0) -> ImportReport:
    """Imports a t5x checkpoint (legacy or Orbax) into a new mt3x checkpoint directory `dst`.

    Args: as `load_t5x_params`, plus `dst` (a run directory, written atomically), `overwrite`
      (replace a non-empty `dst`) and `seed` (the TrainState's PRNG key).

    Returns:
      the ImportReport (also in `dst/t5x_import_report.json` and the checkpoint's meta). Its
      `model_spec` names the `mt3x_model.json` written, or says why none was.
    """
    if not overwrite:
        _refuse_existing(Path(dst).absolute(), "destination")  # before reading anything
    params, name, cfg, report = load_t5x_params(src, config=config, step=step, backend=backend)
    spec = model_spec_for(cfg)
    report.model_spec = (f"{spec['vocab']} vocabulary, inputs {spec['inputs']!r}" if spec else
                         f"none written: no mt3x vocabulary has {cfg.vocab_size} ids")
    meta = {"gin_config": "", "t5x_import": {"source": str(report.source), "config_name": name,
                                             "config": dataclasses.asdict(cfg),
                                             "t5x_step": report.step}}
    write_mt3x_params_checkpoint(dst, params, meta=meta, report=report.to_json(),
                                 model_spec=spec, overwrite=overwrite, seed=seed)
    return report


# ---- export ------------------------------------------------------------------------------
def _checkpoint_root(checkpoint: str | Path) -> Path:
    root = Path(checkpoint)
    return root / "checkpoints" if (root / "checkpoints").is_dir() else root


def read_mt3x_params(checkpoint: str | Path, *, step: int | None = None
                     ) -> tuple[dict[str, Any], int]:
    """(params as nested float numpy, step) of an mt3x checkpoint dir or run workdir.

    Shapes come from the Orbax metadata, so no model config is needed; arrays are restored with
    `mt3x.trainer.restore_params` onto one device.
    """
    from mt3x.trainer import restore_params
    from mt3x.trainer.checkpoints import finalized_steps

    root = _checkpoint_root(Path(checkpoint).absolute())
    steps, partial = finalized_steps(root)
    if not steps:
        detail = f"only partial step folders {partial}" if partial else "no committed step"
        raise T5xCheckpointError(f"{checkpoint} is not an mt3x checkpoint: it holds {detail} "
                                 "(expected <step>/state/ and <step>/commit_success.txt)")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise T5xCheckpointError(f"{root} has no committed step {step}; it has {steps}")
    shapes = orbax_layout.read_orbax_shapes(root / str(step) / orbax_layout.STATE_ITEM)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {n[len("params."):]: jax.ShapeDtypeStruct(s, d, sharding=device)
                for n, (s, d) in shapes.items() if n.startswith("params.")}
    if not abstract:
        raise T5xCheckpointError(f"{root / str(step)} holds no 'params' arrays")
    params = restore_params(root, unflatten_params(abstract), step)
    return jax.tree.map(np.asarray, jax.device_get(params)), step


@dataclasses.dataclass
class ExportResult:
    """What `export_t5x_checkpoint` wrote.

    path: the t5x step directory `OUT/checkpoint_<step>`; step: its training step; dtype: the
    parameters' dtype on disk; storage: dotted name -> 'inline' | 'zarr' for every array.
    """

    path: Path
    step: int
    dtype: str
    storage: dict[str, str]


def export_t5x_checkpoint(checkpoint: str | Path, out: str | Path, *, step: int | None = None,
                          dtype: str = "float32", inline_small: bool = False,
                          overwrite: bool = False,
                          max_chunk_bytes: int = legacy.DEFAULT_MAX_CHUNK_BYTES) -> ExportResult:
    """Writes our checkpoint's params as a legacy t5x checkpoint `out/checkpoint_<step>`.

    The layout is what t5x's Checkpointer writes (msgpack `checkpoint` + gzip zarr folders,
    specs with the kvstore path's trailing '/' and gzip level 1) in the folder name t5x's
    default (Orbax) restore parses the step from; the step is the mt3x checkpoint's.

    Args:
      checkpoint: an mt3x checkpoint directory or run workdir.
      out: a t5x model directory (created if needed) that receives `checkpoint_<step>/`.
      step: which committed step (default the latest).
      dtype: 'float32' (bit-exact) or 'bfloat16' (rounded to nearest even), as t5x's
        SaveCheckpointConfig(dtype=...) writes them.
      inline_small: keep vectors (rank <= 1: the RMSNorm scales) inline in the msgpack, as the
        released MT3 checkpoint does; else every array is a gzip zarr folder.
      overwrite: replace an existing non-empty `out/checkpoint_<step>`.
      max_chunk_bytes: largest zarr chunk.

    Raises:
      T5xCheckpointError: an unknown dtype, `out` is a file, the step folder exists (without
        `overwrite`), or an unreadable checkpoint; nothing is written then.
    """
    if dtype not in EXPORT_DTYPES:
        raise T5xCheckpointError(f"dtype {dtype!r}: expected one of {EXPORT_DTYPES}")
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise T5xCheckpointError(f"output {out} exists and is a file; expected a t5x model "
                                 "directory to hold checkpoint_<step>/")
    params, step = read_mt3x_params(Path(checkpoint).absolute(), step=step)
    step_dir = out / f"checkpoint_{step}"
    if not overwrite:
        _refuse_existing(step_dir, "t5x checkpoint")
    dotted = [".".join(str(getattr(k, "key", k)) for k in path)
              for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
              if any("." in str(getattr(k, "key", k)) for k in path)]
    if dotted:
        raise T5xCheckpointError(f"{checkpoint}: parameter names with '.' cannot become t5x "
                                 f"folder names: {dotted[:3]}")
    if dtype == "bfloat16":
        params = jax.tree.map(lambda a: a.astype(ml_dtypes.bfloat16)
                              if np.issubdtype(a.dtype, np.floating) else a, params)
    inline = (lambda name, array: array.ndim <= 1) if inline_small else \
        (lambda name, array: False)
    with atomic_path(step_dir, is_dir=True) as tmp:
        storage = legacy.write_legacy_checkpoint(tmp, params, step=step, inline=inline,
                                                 max_chunk_bytes=max_chunk_bytes)
    return ExportResult(path=step_dir, step=step, dtype=dtype, storage=storage)
