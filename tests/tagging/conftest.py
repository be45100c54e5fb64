"""Fixtures for the tagging tests: the demo dataset (built once per session), its examples, and a
tagger trained on them (synthetic SlakhTrack stand-ins are in tagging_fakes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """The demo preset (10 Bach chorales split 6/2/2 by piece, 16 kHz), with instruments drawn from
    the default pool per track (instead of one fixed quartet), drums on every second track, three
    8-second mixes per piece: so every instrument is present in some tracks and absent in others,
    which is what a tagger can learn. 30 tracks, 270 s of audio."""
    from mt3x.data.instruments import Recipe
    from mt3x.data.presets import build_demo

    return build_demo(tmp_path_factory.mktemp("tagging") / "demo", seed=0,
                      recipe=Recipe(kind="pool"), drums_every=2, mixes_per_piece=3,
                      segment_seconds=8.0)


@pytest.fixture(scope="session")
def demo_examples(demo_root):
    """{'train', 'validation', 'test'}: SnippetExamples of the demo data (inst_class grouping)."""
    from separation.tagging.pipeline import load_split_examples

    train = load_split_examples(demo_root, "train")
    out = {"train": train}
    for split in ("validation", "test"):
        out[split] = load_split_examples(demo_root, split, instruments=train.instruments)
    return out


@pytest.fixture(scope="session")
def demo_tagger(demo_examples):
    from separation.tagging.model import TrainConfig, train_tagger

    return train_tagger(demo_examples["train"], demo_examples["validation"],
                        config=TrainConfig(seed=0))
