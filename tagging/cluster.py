"""Grouping tracks by spectral character: k-means on per-track feature statistics, PCA in 2-D.

A track is described by the mean and standard deviation, over its non-silent snippets (level above
`min_level_db`), of three snippet features: the spectral centroid (as log2 Hz, so an octave counts
the same everywhere), the band energy ratio below/above the split frequency (dB) and the spectral
flatness. The six statistics are standardised (zero mean, unit variance over tracks), clustered by
scikit-learn's k-means (seeded, `n_init` restarts) and projected to two dimensions by PCA for the
plot (`tagging.plots.cluster_plot`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from mt3x.errors import Mt3xError
from tagging.examples import SnippetExamples

__all__ = ["TrackClusters", "cluster_tracks", "track_statistics", "TRACK_STAT_NAMES"]

TRACK_STAT_NAMES = ("centroid_log2hz_mean", "centroid_log2hz_std", "ber_db_mean", "ber_db_std",
                    "flatness_mean", "flatness_std")


@dataclasses.dataclass
class TrackClusters:
    """Result of `cluster_tracks`.

    Attributes:
      track_ids: str[tracks].
      statistics: f64[tracks, 6], raw (unstandardised) values named by TRACK_STAT_NAMES.
      labels: i32[tracks], cluster of each track (0..k-1).
      projection: f64[tracks, 2], PCA of the standardised statistics.
      explained_variance_ratio: f64[2].
      centres: f64[k, 6], cluster centres in raw units.
    """

    track_ids: list[str]
    statistics: np.ndarray
    labels: np.ndarray
    projection: np.ndarray
    explained_variance_ratio: np.ndarray
    centres: np.ndarray


def track_statistics(examples: SnippetExamples, *,
                     min_level_db: float = -60.0) -> tuple[list[str], np.ndarray]:
    """(track ids in first-seen order, f64[tracks, 6] statistics) from snippet features."""
    names = examples.feature_names
    col = {n: names.index(n) for n in ("centroid_hz", "ber_db", "flatness", "level_mean_db")}
    order = list(dict.fromkeys(examples.track_ids.tolist()))
    stats = np.zeros((len(order), len(TRACK_STAT_NAMES)))
    for row, track in enumerate(order):
        feats = examples.features[examples.track_ids == track].astype(np.float64)
        loud = feats[feats[:, col["level_mean_db"]] > min_level_db]
        if loud.shape[0] == 0:
            loud = feats
        centroid = np.log2(np.maximum(loud[:, col["centroid_hz"]], 1.0))
        ber = loud[:, col["ber_db"]]
        flat = loud[:, col["flatness"]]
        stats[row] = [centroid.mean(), centroid.std(), ber.mean(), ber.std(), flat.mean(),
                      flat.std()]
    return order, stats


def cluster_tracks(examples: SnippetExamples, *, k: int = 4, seed: int = 0, n_init: int = 10,
                   min_level_db: float = -60.0) -> TrackClusters:
    """k-means clusters of the tracks in `examples` (see the module docstring)."""
    track_ids, stats = track_statistics(examples, min_level_db=min_level_db)
    if len(track_ids) < k:
        raise Mt3xError(f"clustering: {len(track_ids)} tracks cannot form k={k} clusters")
    if k < 1:
        raise Mt3xError(f"clustering: k must be >= 1, got {k}")
    mean = stats.mean(axis=0)
    std = stats.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    standard = (stats - mean) / std
    kmeans = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(standard)
    dims = min(2, standard.shape[0], standard.shape[1])
    pca = PCA(n_components=dims, random_state=seed).fit(standard)
    projection = np.zeros((standard.shape[0], 2))
    projection[:, :dims] = pca.transform(standard)
    ratio = np.zeros(2)
    ratio[:dims] = pca.explained_variance_ratio_
    return TrackClusters(track_ids=track_ids, statistics=stats,
                         labels=kmeans.labels_.astype(np.int32), projection=projection,
                         explained_variance_ratio=ratio,
                         centres=kmeans.cluster_centers_ * std + mean)
