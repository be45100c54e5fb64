"""Instrument grouping and training windows from a tiny hand-made Slakh-layout folder."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from mt3x.data.slakh import read_split
from mt3x.errors import Mt3xError
from separation import data

SR = 8000


def _write_track(root: Path, track: str, stems: dict, seconds: float, seed: int):
    """stems: name -> (program, is_drum, inst_class, rendered). Stem k is a constant k+1 * 0.01
    times a random sign pattern, so tests can tell which stem ended up where."""
    rng = np.random.default_rng(seed)
    folder = root / "train" / track
    (folder / "stems").mkdir(parents=True)
    meta = {"UUID": track, "stems": {}}
    mix = np.zeros(int(seconds * SR), np.float32)
    for name, (program, is_drum, inst_class, rendered) in stems.items():
        meta["stems"][name] = {"program_num": program, "is_drum": is_drum,
                               "inst_class": inst_class, "audio_rendered": rendered}
        if rendered:
            audio = (0.05 * rng.choice([-1.0, 1.0], mix.size)).astype(np.float32)
            soundfile.write(folder / "stems" / f"{name}.wav", audio, SR, subtype="FLOAT")
            mix += audio
    soundfile.write(folder / "mix.wav", mix, SR, subtype="FLOAT")
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("slakh")
    _write_track(root, "Track00001", {"S00": (33, False, "Bass", True),
                                      "S01": (0, False, "Piano", True),
                                      "S02": (0, True, "Drums", True),
                                      "S03": (48, False, "Strings", True),
                                      "S04": (25, False, "Guitar", False)}, 2.0, 1)
    _write_track(root, "Track00002", {"S00": (4, False, "Piano", True),
                                      "S01": (26, False, "Guitar", True)}, 1.5, 2)
    return root


def test_four_stem_assignment(tiny_root):
    tracks = read_split(tiny_root, "train")
    assert data.assign_stems(tracks[0], data.FOUR_STEMS) == [["S00"], ["S02"], [], ["S01"], ["S03"]]
    assert data.assign_stems(tracks[1], data.FOUR_STEMS) == [[], [], ["S01"], ["S00"], []]
    grouped = data.load_grouped(tracks[0], data.FOUR_STEMS, SR)
    assert grouped.shape == (5, 2 * SR)
    np.testing.assert_allclose(grouped.sum(0), tracks[0].load_mix(), atol=1e-6)


def test_parse_instruments():
    groups = data.parse_instruments("low=32-39|class:Strings; kit=drums; lead=stem:S01|0")
    assert [g.name for g in groups] == ["low", "kit", "lead"]
    assert groups[0].programs == tuple(range(32, 40)) and groups[0].classes == ("Strings",)
    assert groups[1].drums and groups[2].stem_names == ("S01",) and groups[2].programs == (0,)
    assert data.parse_instruments("4stem") == data.FOUR_STEMS
    assert data.parse_instruments("piano,guitar,bass") == data.parse_instruments(
        "piano=0-7;guitar=24-31;bass=32-39")
    for bad in ("violin", "a=1;a=2", "a=x-y", "a=200", "other=1", "other=*"):
        with pytest.raises(Mt3xError):
            data.parse_instruments(bad)


def test_windows_are_seeded_sum_to_mixture_and_remix(tiny_root):
    tracks = read_split(tiny_root, "train")
    kw = dict(sample_rate=SR, window_samples=4000, batch_size=6, seed=3, pool_size=4)
    a = iter(data.SeparationWindows(tracks, data.FOUR_STEMS, **kw))
    b = iter(data.SeparationWindows(tracks, data.FOUR_STEMS, **kw))
    first, again = next(a), next(b)
    np.testing.assert_array_equal(first["mixture"], again["mixture"])
    assert first["mixture"].shape == (6, 4000) and first["sources"].shape == (6, 4, 4000)
    assert first["mixture"].dtype == np.float32
    # mixture = targets + residual, so it is never smaller than the targets' sum in energy terms
    residual = first["mixture"] - first["sources"].sum(1)
    assert np.abs(first["mixture"]).max() <= 0.99 + 1e-6
    # the guitar only exists in track 2 and the strings only in track 1; with remixing they
    # appear together in one example (the residual holds the strings)
    both = [np.any(first["sources"][i, 2]) and np.any(residual[i]) for i in range(6)]
    assert any(both)
    other = next(iter(data.SeparationWindows(tracks, data.FOUR_STEMS, **{**kw, "seed": 4})))
    assert not np.array_equal(other["mixture"], first["mixture"])


def test_windows_without_remix_keep_one_track_and_gain(tiny_root):
    tracks = read_split(tiny_root, "train")
    batch = next(iter(data.SeparationWindows(tracks, data.FOUR_STEMS, sample_rate=SR,
                                              window_samples=2000, batch_size=4, seed=0,
                                              remix=False, gain_range=None)))
    # without gain each stem sample is +-0.05 exactly
    vals = np.abs(batch["sources"])
    assert np.all(np.isclose(vals, 0.0) | np.isclose(vals, 0.05))
    for sources in batch["sources"]:
        # track 1 has bass+drums+piano, track 2 guitar+piano: never bass with guitar
        assert not (np.any(sources[0]) and np.any(sources[2]))


def test_evaluation_examples(tiny_root):
    tracks = read_split(tiny_root, "train")
    items = list(data.evaluation_examples(tracks, data.FOUR_STEMS, SR, max_seconds=1.0))
    assert [i[0] for i in items] == ["Track00001", "Track00002"]
    _, mix, src = items[0]
    assert mix.shape == (SR,) and src.shape == (4, SR)
