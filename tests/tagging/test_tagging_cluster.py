"""Track clustering: dark tonal tracks and bright noisy tracks fall into different clusters."""

from __future__ import annotations

import numpy as np

from separation.tagging.cluster import TRACK_STAT_NAMES, cluster_tracks, track_statistics
from separation.tagging.examples import build_examples
from separation.tagging.plots import cluster_plot
from tagging_fakes import FakeNote, FakeStem, FakeTrack, tone

SR = 16000


def _tracks():
    rng = np.random.default_rng(0)
    tracks = []
    for i in range(4):   # dark: low tones
        audio = tone(70.0 + 15 * i, 3.0, 0.3) + tone(140.0 + 20 * i, 3.0, 0.1)
        tracks.append(FakeTrack(f"Track{i:05d}", [FakeStem("S00", 33, False, "Bass", audio,
                                                           [FakeNote(0.0, 3.0)])]))
    for i in range(4, 8):   # bright: high-passed noise plus a high tone
        noise = np.diff(rng.normal(0, 0.1, 3 * SR + 1)).astype(np.float32)
        audio = noise + tone(3000.0 + 200 * i, 3.0, 0.05)
        tracks.append(FakeTrack(f"Track{i:05d}", [FakeStem("S00", 0, True, "Drums", audio,
                                                           [FakeNote(0.0, 3.0, True)])]))
    return tracks


def test_clusters_separate_dark_and_bright_tracks(tmp_path):
    examples = build_examples(_tracks())
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
