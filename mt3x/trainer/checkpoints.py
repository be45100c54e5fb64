"""Orbax checkpoints: everything to resume a run, the latest plus the best k by a metric.

Layout (one Orbax CheckpointManager directory, usually `<workdir>/checkpoints`):
```
checkpoints/<step>/state/   params, opt_state, step, rng, nonfinite_steps (sharded arrays)
checkpoints/<step>/data/    the data position (JSON, BatchSource.get_state())
checkpoints/<step>/meta/    operative gin config text, train-loss history, free-form info (JSON)
checkpoints/<step>/commit_success.txt   written last: a step without it is partial, ignored
```
Saves are asynchronous (training continues while arrays are written); `wait()` and `close()`
block until they are committed, and `train` always calls them before it returns or raises.
Restoring takes a target with shardings, so a checkpoint written on one mesh loads onto another.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as ocp_policy

from mt3x.trainer.errors import CheckpointError
from mt3x.trainer.partitioning import path_str
from mt3x.trainer.train_state import TrainState

PyTree = Any
BEST_MODES = ("min", "max")
_STEP_DIR = re.compile(r"^(\d+)(\..*)?$")


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
        metadata = self._manager.item_metadata(step)
        stored = metadata["state"] if metadata is not None else None
        if stored is None:
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} has no readable 'state' item; it was "
                "not written by mt3x.trainer")
        return stored

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
        step = self._require_step(step)
        target = state_to_dict(abstract_state)
        check_compatible(self._stored_state_metadata(step), target,
                         where=str(self.directory / str(step)))
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=_pytree_restore(target), data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return dict_to_state(restored["state"]), dict(restored["data"]), dict(restored["meta"])

    def restore_params(self, abstract_params: PyTree, step: int | None = None) -> PyTree:
        """Restores only the params (e.g. to fine-tune with a new optimizer).

        Args:
          abstract_params: ShapeDtypeStructs with target shardings (unboxed params tree).
          step: a committed step (default: the latest).
        """
        step = self._require_step(step)
        item = {"params": abstract_params}
        check_compatible(self._stored_state_metadata(step), item,
                         where=str(self.directory / str(step)), within="params/")
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=_pytree_restore(item, partial=True)))
        return restored["state"]["params"]

    def read_data_and_meta(self, step: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(data position, JSON metadata: gin config text, loss history) of a step; no arrays."""
        step = self._require_step(step)
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


def numpy_tree(tree: PyTree) -> PyTree:
    """Host copies of a tree of arrays (for tests and comparisons)."""
    return jax.tree.map(np.asarray, jax.device_get(tree))
