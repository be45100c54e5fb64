"""Instrument activity tagging: which instruments play in each second of a mixture.

A package of its own on mt3x (not a separator: it imports nothing of `separation`); its CLI is
`mt3x-tag` (`tagging.cli`).

- `examples`: 1-second snippets of a track's mixture, labelled per instrument from stem energy
  and from MIDI (the rules are in its docstring); instrument groupings.
- `features`: jitted, batched spectral features on `mt3x.audio.spectrum` (log-frequency band
  energies, centroid, band energy ratio, flatness), with named columns.
- `model`: one LightGBM binary model per instrument; evaluation; save / load.
- `importance`: gain importance grouped by frequency band.
- `cluster`: k-means of tracks by spectral statistics, PCA projection.
- `plots`: importance chart, activity timeline, cluster plot (PNG).
- `pipeline`: train on a Slakh2100-layout folder, tag files, cluster tracks (what `mt3x-tag` runs).
"""

from mt3x.util.quiet import quiet_startup

# `mt3x-tag` (tagging.cli) loads this package first, and these imports load note_seq/pydub:
# quiet their start-up noise before they do (--verbose keeps it; see mt3x.util.quiet).
quiet_startup()

from tagging.examples import (FOUR_STEM_GROUPING, InstrumentGrouping, LabelConfig,
                              SnippetExamples, build_examples, cut_snippets,
                              energy_activity, midi_activity, num_snippets,
                              track_examples)
from tagging.features import (FeatureConfig, band_centres_hz, band_of_feature,
                              compute_features, feature_names, snippet_features)
from tagging.model import (Tagger, TrainConfig, evaluate, load_tagger,
                           metrics_markdown, save_tagger, train_tagger)

__all__ = [
    "FOUR_STEM_GROUPING",
    "FeatureConfig",
    "InstrumentGrouping",
    "LabelConfig",
    "SnippetExamples",
    "Tagger",
    "TrainConfig",
    "band_centres_hz",
    "band_of_feature",
    "build_examples",
    "compute_features",
    "cut_snippets",
    "energy_activity",
    "evaluate",
    "feature_names",
    "load_tagger",
    "metrics_markdown",
    "midi_activity",
    "num_snippets",
    "save_tagger",
    "snippet_features",
    "track_examples",
    "train_tagger",
]
