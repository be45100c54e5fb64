"""Orbax checkpoints: everything to resume a run, the latest plus the best k by a metric.

Layout (one Orbax CheckpointManager directory, usually `<workdir>/checkpoints`):
```
checkpoints/<step>/state/   params, opt_state, step, rng, nonfinite_steps (sharded arrays)
checkpoints/<step>/data/    the data position (JSON, BatchSource.get_state())
checkpoints/<step>/meta/    operative gin config text, train-loss history, free-form info (JSON)
checkpoints/<step>/commit_success.txt   written last: a step without it is partial, ignored
```
A committed step whose files were later damaged (an Orbax data file missing or truncated) is
found when it is read: restoring "the latest step" then falls back to the newest intact step with
a warning naming the damaged step and file (`newest_intact`, the one place of that rule); an
explicitly requested damaged step, or none intact, is a CheckpointError naming step and file.
Saves are asynchronous (training continues while arrays are written); `wait()` and `close()`
block until they are committed, and `train` always calls them before it returns or raises.
Restoring takes a target with shardings, so a checkpoint written on one mesh loads onto another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as ocp_policy

from mt3x.trainer.errors import CheckpointError
from mt3x.trainer.partitioning import path_str
from mt3x.trainer.train_state import TrainState

log = logging.getLogger(__name__)

PyTree = Any
T = TypeVar("T")
BEST_MODES = ("min", "max")
_STEP_DIR = re.compile(r"^(\d+)(\..*)?$")
_LOCAL_FILE = re.compile(r'local file "([^"]+)"')


class DamagedCheckpointError(CheckpointError):
    """A committed step cannot be read: one of its files is missing, truncated or corrupt."""

    def __init__(self, step: int, file: str, reason: str) -> None:
        super().__init__(f"checkpoint step {step} is damaged: {file}: {reason}")
        self.step, self.file, self.reason = step, file, reason


@dataclasses.dataclass(frozen=True)
class CheckpointOptions:
    """How often and which checkpoints to keep.

    save_every_steps: save the latest state every this many steps (and at the end of a run).
    keep_latest: how many most recent checkpoints to keep (>= 1).
    keep_best: additionally keep this many best checkpoints by `best_metric` (0: none). Steps
      with evaluation results are always saved so they can compete.
    best_metric: a metric name as written by the eval loop, e.g. 'eval/loss' or
      'eval/multi_instrument_f1'.
    best_mode: 'min' (lower is better) or 'max'.
    async_save: write in the background while training continues.
    """

    save_every_steps: int = 1000
    keep_latest: int = 1
    keep_best: int = 0
    best_metric: str = "eval/loss"
    best_mode: str = "min"
    async_save: bool = True

    def __post_init__(self) -> None:
        if self.best_mode not in BEST_MODES:
            raise CheckpointError(f"best_mode must be one of {BEST_MODES}, got {self.best_mode!r}")
        if self.keep_latest < 1 or self.keep_best < 0 or self.save_every_steps < 1:
            raise CheckpointError(
                "need keep_latest >= 1, keep_best >= 0 and save_every_steps >= 1; got "
                f"{self.keep_latest}, {self.keep_best}, {self.save_every_steps}")


def state_to_dict(state: TrainState) -> dict[str, Any]:
    """The TrainState as the plain dict that is written to disk."""
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def dict_to_state(tree: Mapping[str, Any]) -> TrainState:
    return TrainState(**{f.name: tree[f.name] for f in dataclasses.fields(TrainState)})


def finalized_steps(directory: str | os.PathLike) -> tuple[list[int], list[str]]:
    """(committed steps, names of partial step directories) found in a checkpoint directory."""
    root = Path(directory)
    done, partial = [], []
    if not root.is_dir():
        return done, partial
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if not match or not child.is_dir():
            continue
        if match.group(2) is None and (child / "commit_success.txt").exists():
            done.append(int(match.group(1)))
        else:
            partial.append(child.name)
    return sorted(done), sorted(partial)


def check_compatible(stored: PyTree, expected: PyTree, *, where: str,
                     within: str | None = None) -> None:
    """Raises CheckpointError naming the first array path whose presence or shape differs.

    Args:
      stored: the checkpoint's array metadata tree (leaves with .shape).
      expected: the abstract target tree (leaves with .shape).
      where: the checkpoint directory, for the message.
      within: compare only stored arrays under this path prefix (e.g. 'params/').
    """
    def by_path(tree: PyTree) -> dict[str, tuple[int, ...]]:
        return {path_str(p): tuple(leaf.shape)
                for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

    have, want = by_path(stored), by_path(expected)
    if within is not None:
        have = {k: v for k, v in have.items() if k.startswith(within)}
    # Report a param mismatch before the optimizer-state mismatches it causes.
    for name, shape in sorted(want.items(), key=lambda kv: not kv[0].startswith("params/")):
        if name not in have:
            raise CheckpointError(
                f"checkpoint {where} does not match this model: it has no array {name!r} "
                f"(expected shape {shape}); it holds e.g. {sorted(have)[:4]}")
        if have[name] != shape:
            raise CheckpointError(
                f"checkpoint {where} does not match this model: array {name!r} has shape "
                f"{have[name]} in the checkpoint, expected {shape}")
    extra = sorted(set(have) - set(want))
    if extra:
        raise CheckpointError(
            f"checkpoint {where} does not match this model: it has an array {extra[0]!r} "
            f"(shape {have[extra[0]]}) that this model/optimizer does not")


def _pytree_restore(target: PyTree, partial: bool = False) -> ocp.args.PyTreeRestore:
    """Restore args placing every array on the sharding of its ShapeDtypeStruct in `target`."""
    return ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=partial)


class Checkpointer:
    """Saves and restores TrainStates plus the data position and run metadata.

    Args:
      directory: the checkpoint directory (created when missing, unless `read_only`).
      options: what to keep and how to save.
      read_only: only restore (for fine-tuning or evaluating from someone else's run).
    """

    def __init__(self, directory: str | os.PathLike,
                 options: CheckpointOptions = CheckpointOptions(), *,
                 read_only: bool = False) -> None:
        self.directory = Path(directory).absolute()
        self.options = options
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"checkpoint directory {self.directory} does not exist")
        policies: list[Any] = [ocp_policy.LatestN(options.keep_latest)]
        if options.keep_best:
            metric = options.best_metric
            policies.append(ocp_policy.BestN(
                get_metric_fn=lambda metrics: metrics[metric],
                reverse=options.best_mode == "min", n=options.keep_best,
                keep_checkpoints_without_metrics=False))
        manager_options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp_policy.AnyPreservationPolicy(policies),
            # With best_fn set, Orbax also writes each step's metrics to disk, so the best-k
            # ranking survives a restart (the preservation policy decides what is kept).
            best_fn=(lambda metrics: metrics[options.best_metric]) if options.keep_best else None,
            best_mode=options.best_mode,
            enable_async_checkpointing=options.async_save, create=not read_only,
            read_only=read_only)
        self._manager = ocp.CheckpointManager(
            self.directory, options=manager_options,
            item_handlers={"state": ocp.PyTreeCheckpointHandler(),
                           "data": ocp.JsonCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})

    # ---- queries --------------------------------------------------------------------------
    def all_steps(self) -> list[int]:
        """Committed steps (with a commit marker), ascending."""
        return finalized_steps(self.directory)[0]

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def _require_step(self, step: int | None) -> int:
        steps = self.all_steps()
        if not steps:
            _, partial = finalized_steps(self.directory)
            detail = (f"only partial (uncommitted) step directories {partial}" if partial
                      else "no checkpoint")
            raise CheckpointError(f"checkpoint directory {self.directory} holds {detail}")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise CheckpointError(
                f"checkpoint directory {self.directory} has no committed step {step}; "
                f"it has {steps}")
        return step

    # ---- save -----------------------------------------------------------------------------
    def save(self, state: TrainState, *, data_state: Mapping[str, Any], meta: Mapping[str, Any],
             metrics: Mapping[str, float] | None = None) -> None:
        """Starts saving `state` at its step (asynchronous unless options.async_save is False).

        Args:
          state: the TrainState (sharded arrays).
          data_state: the BatchSource position after this step (JSON-able).
          meta: JSON-able run metadata ('gin_config' text, 'loss_history', ...).
          metrics: evaluation results at this step; needed for best-k (must then hold
            options.best_metric).
        """
        best = self.options.best_metric
        if metrics is not None and self.options.keep_best and best not in metrics:
            raise CheckpointError(
                f"best_metric {self.options.best_metric!r} is not among the eval metrics "
                f"{sorted(metrics)}; set checkpoint best_metric to one of them")
        step = int(jax.device_get(state.step))
        clean_metrics = None if metrics is None else {k: float(v) for k, v in metrics.items()}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeSave(state_to_dict(state)),
                data=ocp.args.JsonSave(dict(data_state)),
                meta=ocp.args.JsonSave(dict(meta))),
            metrics=clean_metrics, force=True)

    def wait(self) -> None:
        """Blocks until every started save is committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    # ---- restore --------------------------------------------------------------------------
    def _stored_state_metadata(self, step: int) -> PyTree:
        with self._reading(step):
            metadata = self._manager.item_metadata(step)
        stored = metadata["state"] if metadata is not None else None
        if stored is None:
            state_dir = self.directory / str(step) / "state"
            if state_dir.is_dir():
                raise DamagedCheckpointError(step, str(state_dir / "_METADATA"),
                                             "missing or unreadable array metadata")
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} has no readable 'state' item; it was "
                "not written by mt3x.trainer")
        return stored

    @contextlib.contextmanager
    def _reading(self, step: int) -> Iterator[None]:
        """Turns a failed read of `step`'s files (Orbax / TensorStore / OS errors) into a
        DamagedCheckpointError naming the step and the file."""
        _quiet_aborted_reads()
        try:
            yield
        except CheckpointError:
            raise
        except Exception as err:  # noqa: BLE001 (TensorStore raises plain ValueErrors)
            text = str(err).split(" [tensorstore_spec", 1)[0]
            files = _LOCAL_FILE.findall(text)
            if files:
                file = files[-1]
            elif isinstance(err, OSError) and err.filename:
                file = str(err.filename)
            else:
                file = str(self.directory / str(step))
            raise DamagedCheckpointError(step, file, _damage(Path(file), text)) from None

    def verify_step(self, step: int) -> None:
        """Reads every array of `step` into host memory; raises DamagedCheckpointError when a
        file is missing, truncated or corrupt."""
        stored = self._stored_state_metadata(step)
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), stored)
        with self._reading(step):
            self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(item=None, restore_args=args),
                data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))

    def newest_intact(self, step: int | None, read: Callable[[int], T]) -> tuple[int, T]:
        """(step, read(step)) for `step`, or for the newest committed step that `read` can read.

        `read` raises DamagedCheckpointError for a damaged step: with `step` given that error
        propagates; otherwise each damaged step is logged as a warning naming step and file and
        the next older one is tried; none intact raises a CheckpointError naming them all.
        Any other error (e.g. a checkpoint of another model) propagates at once.
        """
        if step is not None:
            return step, read(self._require_step(step))
        damaged: list[DamagedCheckpointError] = []
        for candidate in reversed(self.all_steps() or [self._require_step(None)]):
            try:
                result = read(candidate)
            except DamagedCheckpointError as err:
                damaged.append(err)
                continue
            for err in damaged:
                log.warning("%s; using step %d, the newest intact step of %s", err, candidate,
                            self.directory)
            return candidate, result
        raise CheckpointError(f"checkpoint directory {self.directory} has no intact step: "
                              + "; ".join(str(err) for err in damaged))

    def intact_step(self, step: int | None = None) -> int:
        """`step` (checked), or the newest committed step whose files all read (see
        `newest_intact`); reads the arrays once to check them."""
        return self.newest_intact(step, self.verify_step)[0]

    def resume_step(self) -> int | None:
        """The step a run resumes from: the newest intact committed step (None: none yet).

        Damaged newer steps are renamed `<step>.damaged` (kept for inspection, ignored as
        partial) so that the resumed run can write those steps again.
        """
        if not self.all_steps():
            return None
        step = self.intact_step()
        newer = [s for s in self.all_steps() if s > step]
        if newer and jax.process_index() == 0:
            for damaged in newer:
                aside = self.directory / f"{damaged}.damaged"
                while aside.exists():
                    aside = aside.with_name(aside.name + "-again")
                (self.directory / str(damaged)).rename(aside)
                log.warning("moved damaged checkpoint step %d aside to %s", damaged, aside)
        if newer:
            if jax.process_count() > 1:
                ocp.multihost.sync_global_processes("mt3x_checkpoint_set_aside_damaged")
            self._manager.reload()
        return step

    def restore(self, abstract_state: TrainState, step: int | None = None
                ) -> tuple[TrainState, dict[str, Any], dict[str, Any]]:
        """Restores (state, data position, meta) onto the shardings in `abstract_state`.

        Args:
          abstract_state: TrainState of ShapeDtypeStructs with target shardings (any mesh).
          step: a committed step (default: the latest).

        Raises:
          CheckpointError: no committed checkpoint, or it does not fit the target (names the
            directory and the first mismatching array path and shapes).
        """
        target = state_to_dict(abstract_state)

        def read(step: int) -> dict[str, Any]:
            check_compatible(self._stored_state_metadata(step), target,
                             where=str(self.directory / str(step)))
            with self._reading(step):
                return self._manager.restore(step, args=ocp.args.Composite(
                    state=_pytree_restore(target), data=ocp.args.JsonRestore(),
                    meta=ocp.args.JsonRestore()))

        _, restored = self.newest_intact(step, read)
        return dict_to_state(restored["state"]), dict(restored["data"]), dict(restored["meta"])

    def restore_params(self, abstract_params: PyTree, step: int | None = None) -> PyTree:
        """Restores only the params (e.g. to fine-tune with a new optimizer).

        Args:
          abstract_params: ShapeDtypeStructs with target shardings (unboxed params tree).
          step: a committed step (default: the latest).
        """
        return self.restore_params_and_step(abstract_params, step)[0]

    def restore_params_and_step(self, abstract_params: PyTree, step: int | None = None
                                ) -> tuple[PyTree, int]:
        """(params, the step they come from): `restore_params` that says which step was read
        (the newest intact one when `step` is None)."""
        item = {"params": abstract_params}

        def read(step: int) -> PyTree:
            check_compatible(self._stored_state_metadata(step), item,
                             where=str(self.directory / str(step)), within="params/")
            with self._reading(step):
                return self._manager.restore(step, args=ocp.args.Composite(
                    state=_pytree_restore(item, partial=True)))["state"]["params"]

        step, params = self.newest_intact(step, read)
        return params, step

    def read_data_and_meta(self, step: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(data position, JSON metadata: gin config text, loss history) of a step; no arrays."""
        step = self._require_step(step)
        with self._reading(step):
            restored = self._manager.restore(step, args=ocp.args.Composite(
                data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
        return dict(restored["data"] or {}), dict(restored["meta"] or {})


def restore_params(directory: str | os.PathLike, abstract_params: PyTree,
                   step: int | None = None) -> PyTree:
    """Params from a checkpoint directory written by `train` (its `checkpoints/` folder or the
    run's workdir), placed on the shardings of `abstract_params`."""
    directory = Path(directory)
    if (directory / "checkpoints").is_dir():
        directory = directory / "checkpoints"
    checkpointer = Checkpointer(directory, read_only=True)
    try:
        return checkpointer.restore_params(abstract_params, step)
    finally:
        checkpointer.close()


def _damage(file: Path, message: str) -> str:
    """What is wrong with a checkpoint file, from the failed read's message."""
    if not file.exists():
        return "file missing"
    if file.is_file() and ("OUT_OF_RANGE" in message or "byte range" in message.lower()):
        return f"file truncated ({file.stat().st_size} bytes)"
    return f"unreadable ({message[:300]})"


def _quiet_aborted_reads() -> None:
    """Drops the 'Event loop is closed' RuntimeErrors that TensorStore callbacks still raise
    (as unraisable exceptions, printed with a traceback) after Orbax gave up on a failed read;
    every other unraisable exception still reaches the previous hook. Installed once."""
    previous = sys.unraisablehook
    if getattr(previous, "_mt3x_quiet_aborted_reads", False):
        return

    def hook(unraisable: Any) -> None:
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        previous(unraisable)

    hook._mt3x_quiet_aborted_reads = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def numpy_tree(tree: PyTree) -> PyTree:
    """Host copies of a tree of arrays (for tests and comparisons)."""
    return jax.tree.map(np.asarray, jax.device_get(tree))
