"""Track clustering: dark tonal tracks and bright noisy tracks fall into different clusters."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tagging import cli as tag_cli
from mt3x.data.slakh import read_split
from tagging.cluster import TRACK_STAT_NAMES, cluster_tracks, track_statistics
from tagging.examples import build_examples
from tagging.plots import cluster_plot
from tests.tagging.conftest import SR, StemSpec, tone, write_slakh_track


@pytest.fixture(scope="module")
def slakh_root(tmp_path_factory):
    """A hand-made Slakh folder whose test split holds 8 three-second tracks: Track00000-03 a bass
    (two low sines), Track00004-07 drums (high-passed noise plus a 3.8-4.4 kHz sine)."""
    root = tmp_path_factory.mktemp("cluster") / "slakh"
    rng = np.random.default_rng(0)
    for i in range(4):   # dark: low tones
        audio = tone(70.0 + 15 * i, 3.0, 0.3) + tone(140.0 + 20 * i, 3.0, 0.1)
        write_slakh_track(root, "test", f"Track{i:05d}",
                          [StemSpec(33, [(38 + 3 * i, 0.0, 3.0)], audio)])
    for i in range(4, 8):   # bright: high-passed noise plus a high tone
        noise = np.diff(rng.normal(0, 0.1, 3 * SR + 1)).astype(np.float32)
        audio = noise + tone(3000.0 + 200 * i, 3.0, 0.05)
        hits = [(42, 0.25 * k, 0.25 * k + 0.1) for k in range(12)]   # closed hi-hat, 4 per second
        write_slakh_track(root, "test", f"Track{i:05d}", [StemSpec(0, hits, audio, is_drum=True)])
    return root


def test_clusters_separate_dark_and_bright_tracks(slakh_root, tmp_path):
    examples = build_examples(read_split(slakh_root, "test"))
    ids, stats = track_statistics(examples)
    assert ids == [f"Track{i:05d}" for i in range(8)]
    centroid = stats[:, TRACK_STAT_NAMES.index("centroid_log2hz_mean")]
    assert np.all(centroid[:4] < np.log2(300)) and np.all(centroid[4:] > np.log2(2000))
    clusters = cluster_tracks(examples, k=2, seed=0)
    labels = clusters.labels
    assert len(set(labels[:4])) == 1 and len(set(labels[4:])) == 1 and labels[0] != labels[4]
    again = cluster_tracks(examples, k=2, seed=0)
    np.testing.assert_array_equal(again.labels, labels)
    np.testing.assert_allclose(again.projection, clusters.projection)
    # The first principal component carries most of the spread between the two groups.
    assert clusters.explained_variance_ratio[0] > 0.5
    gap = abs(clusters.projection[:4, 0].mean() - clusters.projection[4:, 0].mean())
    assert gap > 2 * clusters.projection[:, 1].std()
    path = cluster_plot(clusters, tmp_path / "clusters.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # `mt3x-tag cluster` on the folder: the same clusters, with each track's instrument classes.
    out = tmp_path / "cli"
    assert tag_cli.main(["cluster", "--data", str(slakh_root), "--k", "2", "--out", str(out),
                         "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "clusters.csv")))
    assert [r["track"] for r in rows] == ids
    assert [int(r["cluster"]) for r in rows] == labels.tolist()
    assert [r["instruments"] for r in rows] == ["Bass"] * 4 + ["Drums"] * 4
    np.testing.assert_allclose([float(r["centroid_log2hz_mean"]) for r in rows], centroid,
                               atol=1e-4)
    assert (out / "clusters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
