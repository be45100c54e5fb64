"""Pictures of separations: the spectrogram figure of separated stems (the mixture, each estimate
and, when given, the truth) and heat maps of what each output is made of."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mt3x.util.files import atomic_path
from separation.spectral import StftConfig

if TYPE_CHECKING:
    from separation.evaluate import Composition


def _db(stft_config: StftConfig, audio: np.ndarray) -> np.ndarray:
    """float32[samples] -> dB magnitude float32[bins, frames] (floor -100 dB)."""
    import jax.numpy as jnp
    mag = np.abs(np.asarray(stft_config.stft(jnp.asarray(audio, jnp.float32))))
    return (20.0 * np.log10(np.maximum(mag, 1e-5))).T


def spectrogram_figure(path: str | os.PathLike, mixture: np.ndarray, estimates: np.ndarray,
                       names: Sequence[str], sample_rate: int, *,
                       references: np.ndarray | None = None,
                       stft_config: StftConfig = StftConfig(1024, 256),
                       max_seconds: float | None = 20.0) -> Path:
    """Writes a PNG grid: row 0 the mixture; one row per instrument with the estimate (and the
    reference beside it when `references` is given).

    Args:
      mixture: float32[samples]; estimates, references: float32[n_inst, samples].
      names: the n_inst instrument names.
      sample_rate: Hz (axis labels).
      max_seconds: plot at most this much from the start.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    limit = None if max_seconds is None else int(max_seconds * sample_rate)
    mixture = np.asarray(mixture)[:limit]
    estimates = np.asarray(estimates)[:, :limit]
    cols = 2 if references is not None else 1
    fig, axes = plt.subplots(1 + len(names), cols, figsize=(6 * cols, 1.9 * (1 + len(names))),
                             squeeze=False, sharex=True, sharey=True)
    extent = (0, mixture.size / sample_rate, 0, sample_rate / 2000)

    def show(ax, audio, title):
        ax.imshow(_db(stft_config, audio), origin="lower", aspect="auto", extent=extent,
                  vmin=-80, vmax=20, cmap="magma")
        ax.set_title(title, fontsize=8)
    show(axes[0, 0], mixture, "mixture")
    if cols == 2:
        axes[0, 1].axis("off")
    for j, name in enumerate(names):
        show(axes[j + 1, 0], estimates[j], f"{name}: estimate")
        if references is not None:
            show(axes[j + 1, 1], np.asarray(references)[j, :limit], f"{name}: reference")
    for ax in axes[:, 0]:
        ax.set_ylabel("kHz", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("s", fontsize=7)
    return _save(fig, path, dpi=100)


def composition_figure(path: str | os.PathLike, panels: Sequence["Composition"]) -> Path:
    """Writes a PNG of heat maps side by side, one per `separation.evaluate.Composition` (e.g. the
    mixture's and a model's): rows the outputs (with their track counts), columns the energy
    shares in 0..1, each cell labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n_out, n_parts = panels[0].shares.shape
    fig, axes = plt.subplots(1, len(panels), figsize=(0.3 + (1.2 + 0.5 * n_parts) * len(panels),
                                                      1.2 + 0.5 * n_out), squeeze=False)
    for ax, c in zip(axes[0], panels):
        ax.imshow(np.nan_to_num(c.shares), cmap="magma_r", vmin=0, vmax=1)
        for j in range(n_out):
            for k in range(n_parts):
                v = c.shares[j, k]
                ax.text(k, j, "n/a" if not np.isfinite(v) else f"{v:.2f}", ha="center",
                        va="center", fontsize=7, color="w" if np.nan_to_num(v) > 0.6 else "k")
        ax.set_xticks(range(n_parts), c.parts, rotation=35, ha="right")
        ax.set_yticks(range(n_out), [f"{o} ({t})" for o, t in zip(c.outputs, c.tracks)])
        ax.set_xlabel("share of the output's energy from")
        ax.set_title(c.method, fontsize=9)
    axes[0][0].set_ylabel("output (tracks)")
    return _save(fig, path, dpi=120)


def _save(fig, path: str | os.PathLike, *, dpi: int) -> Path:
    """Lays out `fig`, writes it as PNG to `path` atomically and closes it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path
