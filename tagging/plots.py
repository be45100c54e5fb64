"""PNG charts: band importance, per-second activity timeline, track clusters (matplotlib, Agg).

Every function writes its file atomically and returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mt3x.util.files import atomic_path  # noqa: E402
from tagging.cluster import TrackClusters  # noqa: E402
from tagging.importance import BandImportance, region_summary  # noqa: E402

__all__ = ["cluster_plot", "importance_chart", "timeline_plot"]


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _hz_label(hz: float) -> str:
    return f"{hz / 1000:.1f}k" if hz >= 1000 else f"{hz:.0f}"


def importance_chart(importance: BandImportance, path: str | os.PathLike, *,
                     split_hz: float | None = None) -> Path:
    """Two panels: mean gain share per band (bars, with the snippet-wide features on the right)
    and an instrument x band heat map; the title states the region summary."""
    bands = importance.band_centres_hz
    mean_bands = importance.mean_band_share()
    mean_other = importance.mean_other_share()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 3.2 + 0.35 * len(importance.instruments)
                                                       + 3.2),
                                      gridspec_kw={"height_ratios": [1.0, 0.25 + 0.1 *
                                                                     len(importance.instruments)]})
    x = np.arange(bands.size)
    colours = ["tab:blue" if split_hz is None or hz < split_hz else "tab:orange" for hz in bands]
    top.bar(x, mean_bands, color=colours)
    other_x = bands.size + 1 + np.arange(len(importance.other_names))
    top.bar(other_x, mean_other, color="tab:gray")
    top.set_xticks(list(x) + list(other_x))
    top.set_xticklabels([_hz_label(h) for h in bands] + importance.other_names, rotation=60,
                        fontsize=8)
    top.set_ylabel("share of gain (mean over instruments)")
    regions = region_summary(importance)
    summary = "; ".join(f"{r['region']}: {r['gain_fraction']:.0%} of band gain in "
                        f"{r['bands']} bands" for r in regions)
    top.set_title(f"Feature importance (LightGBM gain) by band centre (Hz)\n{summary}", fontsize=9)
    image = bottom.imshow(importance.band_share, aspect="auto", cmap="viridis",
                          interpolation="nearest")
    bottom.set_yticks(range(len(importance.instruments)))
    bottom.set_yticklabels(importance.instruments, fontsize=8)
    bottom.set_xticks(x)
    bottom.set_xticklabels([_hz_label(h) for h in bands], rotation=60, fontsize=8)
    bottom.set_xlabel("band centre (Hz)")
    fig.colorbar(image, ax=bottom, label="gain share")
    fig.tight_layout()
    return _save(fig, path)


def timeline_plot(probabilities: np.ndarray, decisions: np.ndarray, instruments: Sequence[str],
                  path: str | os.PathLike, *, snippet_seconds: float = 1.0,
                  title: str = "") -> Path:
    """Instruments x seconds heat map of probabilities (f[seconds, instruments]), with a dot
    where the decision (bool[seconds, instruments]) says 'plays'."""
    seconds = probabilities.shape[0]
    fig, ax = plt.subplots(figsize=(min(4 + 0.25 * seconds, 24), 1.2 + 0.4 * len(instruments)))
    extent = (0, seconds * snippet_seconds, len(instruments) - 0.5, -0.5)
    image = ax.imshow(probabilities.T, aspect="auto", cmap="magma", vmin=0, vmax=1,
                      interpolation="nearest", extent=extent)
    rows, cols = np.nonzero(decisions.T)
    ax.scatter((cols + 0.5) * snippet_seconds, rows, s=10, c="cyan", marker="o")
    ax.set_yticks(range(len(instruments)))
    ax.set_yticklabels(instruments, fontsize=8)
    ax.set_xlabel("time (s)")
    ax.set_title(title or "instrument activity (colour: probability, dot: plays)", fontsize=9)
    fig.colorbar(image, ax=ax, label="p(plays)")
    fig.tight_layout()
    return _save(fig, path)


def cluster_plot(clusters: TrackClusters, path: str | os.PathLike, *,
                 annotate: bool = True) -> Path:
    """Tracks in the PCA plane, coloured by k-means cluster."""
    fig, ax = plt.subplots(figsize=(7, 5.5))
    cmap = plt.get_cmap("tab10")
    for label in np.unique(clusters.labels):
        mask = clusters.labels == label
        ax.scatter(clusters.projection[mask, 0], clusters.projection[mask, 1], s=30,
                   color=cmap(int(label) % 10), label=f"cluster {label} ({mask.sum()} tracks)")
    if annotate and len(clusters.track_ids) <= 60:
        for (px, py), name in zip(clusters.projection, clusters.track_ids):
            ax.annotate(str(name).replace("Track", ""), (px, py), fontsize=6, alpha=0.7)
    ratio = clusters.explained_variance_ratio
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%} of variance)")
    ax.set_title("tracks by spectral centroid / band energy ratio / flatness statistics",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
