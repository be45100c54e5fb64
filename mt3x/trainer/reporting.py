"""What a run reports: TensorBoard scalars, a progress bar, the train-loss curve.

Only process 0 writes files and shows the bar; other processes only log. Event files are written
with tensorboardX (protobuf only: no TensorFlow), in the layout TensorBoard reads
(`<logdir>/<collection>/events.out.tfevents.*`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import jax
import tqdm
from tensorboardX import SummaryWriter

from mt3x.util.files import atomic_path

MAX_HISTORY_POINTS = 4000
log = logging.getLogger(__name__)


class _LogWriter:
    """Scalars to the Python log only (the processes that write no event files)."""

    def __init__(self, collection: str) -> None:
        self.collection = collection

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        log.info("[%s] step %d: %s", self.collection, step,
                 ", ".join(f"{k}={v:.6g}" for k, v in scalars.items()))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardWriter:
    """Scalars of one collection ('train', 'eval', 'in-domain', ...) to TensorBoard event files
    under `<logdir>/<collection>`; the same methods as `_LogWriter`."""

    def __init__(self, logdir: str | os.PathLike, collection: str) -> None:
        self.collection = collection
        self._writer = SummaryWriter(os.fspath(Path(logdir) / collection))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, float(value), int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class LossHistory:
    """(step, loss) points of the train loss, thinned to at most MAX_HISTORY_POINTS.

    Saved in every checkpoint's metadata, so the curve of a resumed run covers all its steps.
    When full, every other point is dropped and the sampling interval doubles.
    """

    def __init__(self, steps: Sequence[int] = (), losses: Sequence[float] = (),
                 every: int = 1) -> None:
        self.steps = [int(s) for s in steps]
        self.losses = [float(v) for v in losses]
        self.every = int(every)

    def add(self, step: int, loss: float) -> None:
        if step % self.every:
            return
        self.steps.append(int(step))
        self.losses.append(float(loss))
        if len(self.steps) > MAX_HISTORY_POINTS:
            self.every *= 2
            keep = [i for i, s in enumerate(self.steps) if s % self.every == 0]
            self.steps = [self.steps[i] for i in keep]
            self.losses = [self.losses[i] for i in keep]

    def truncate(self, last_step: int) -> None:
        """Drops points after `last_step` (a resumed run repeats them)."""
        keep = [i for i, s in enumerate(self.steps) if s <= last_step]
        self.steps = [self.steps[i] for i in keep]
        self.losses = [self.losses[i] for i in keep]

    def to_json(self) -> dict:
        return {"steps": self.steps, "losses": self.losses, "every": self.every}

    @classmethod
    def from_json(cls, data: Mapping | None) -> "LossHistory":
        data = data or {}
        return cls(data.get("steps", ()), data.get("losses", ()), data.get("every", 1))


def plot_loss_curve(history: LossHistory, path: str | os.PathLike,
                    eval_points: Mapping[int, float] | None = None) -> Path:
    """Writes a PNG of train loss (and eval loss points) against step; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(history.steps, history.losses, lw=1, label="train loss")
    if eval_points:
        steps = sorted(eval_points)
        ax.plot(steps, [eval_points[s] for s in steps], "o-", ms=4, label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def progress_bar(total: int | None, *, initial: int = 0, desc: str | None = None,
                 unit: str = "step", disable: bool = False) -> tqdm.tqdm:
    """The progress bar of every training loop (rate, ETA; `set_postfix` adds the loss).

    Drawn on process 0 only (other processes get a disabled bar); `disable` hides it there too.
    """
    return tqdm.tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                     disable=disable or jax.process_index() != 0, smoothing=0.1)


class RunReporter:
    """TensorBoard writers for 'train' and 'eval' under `<workdir>/tensorboard`, and the bar.

    Args:
      workdir: the run directory.
      num_steps: total steps of the run (for the ETA).
      start_step: the step the run (re)starts from.
      show_progress: draw a tqdm bar (process 0 only).
      tensorboard: write TensorBoard event files (process 0 only); else log the scalars.
      progress_label: the bar's prefix (e.g. a training stage); None: no prefix.
      extra_scalars: called whenever train scalars are written; its {name: value} (e.g. the
        input pipeline's `data/examples_too_long`) are written with them.
    """

    def __init__(self, workdir: str | os.PathLike, *, num_steps: int, start_step: int,
                 show_progress: bool = True, tensorboard: bool = True,
                 progress_label: str | None = None,
                 extra_scalars: Callable[[], Mapping[str, float]] | None = None) -> None:
        lead = jax.process_index() == 0
        self.extra_scalars = extra_scalars
        if tensorboard and lead:
            logdir = Path(workdir) / "tensorboard"
            self.train_writer = TensorBoardWriter(logdir, "train")
            self.eval_writer = TensorBoardWriter(logdir, "eval")
        else:
            self.train_writer, self.eval_writer = _LogWriter("train"), _LogWriter("eval")
        self.bar = progress_bar(num_steps, initial=start_step, desc=progress_label,
                                disable=not show_progress)

    def train_step(self, step: int, metrics: Mapping[str, float], *, write: bool) -> None:
        """Advances the bar to `step`; writes the scalars when `write`."""
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{metrics['loss']:.4g}", refresh=False)
        if write:
            scalars = dict(metrics)
            if self.extra_scalars is not None:
                scalars.update(self.extra_scalars())
            self.train_writer.write_scalars(step, scalars)

    def eval_results(self, step: int, metrics: Mapping[str, float]) -> None:
        self.eval_writer.write_scalars(step, {k.removeprefix("eval/"): v
                                              for k, v in metrics.items()})
        if not self.bar.disable:
            self.bar.write(f"step {step}: " + ", ".join(
                f"{k}={v:.4g}" for k, v in metrics.items()))

    def close(self) -> None:
        self.bar.close()
        self.train_writer.flush()
        self.eval_writer.flush()
        self.train_writer.close()
        self.eval_writer.close()
