"""The offline piece cache: records round-trip, a build equals the chain it caches, an
interrupted or repeated build keeps its complete shards, a cache of another task is refused, and
`mt3x-data cache` reports bad input as `error: ...` with exit code 2."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordReader

from tests import mt3_testdata as data
from mt3x.cli import data as data_cli
from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.data.slakh import read_split, track_note_sequence
from mt3x.tasks import examples
from mt3x.tasks.cache import (CacheError, cache_task_name, check_manifest, decode_piece,
                              encode_piece, load_manifest, pack_arrays, shard_paths,
                              unpack_arrays)
from mt3x.tasks.cache_build import CacheSettings, build_cache, dataset_fingerprint


def _piece(rng: np.random.Generator, frames: int = 300) -> dict:
    return {"inputs": rng.uniform(-0.7, 0.7, (frames, 128)).astype(np.float32),
            "input_times": np.arange(frames, dtype=np.float32) * 0.008,
            "input_event_start_indices": rng.integers(0, 50, frames).astype(np.int32),
            "input_event_end_indices": rng.integers(0, 50, frames).astype(np.int32),
            "input_state_event_indices": rng.integers(0, 5, frames).astype(np.int32),
            "targets": rng.integers(0, 1500, 50).astype(np.int32),
            "state_events": rng.integers(0, 1500, 5).astype(np.int32)}


@pytest.mark.parametrize("dtype, tolerance", [("int16", 0.7 / 32767), ("float16", 1e-3),
                                              ("float32", 0.0)])
def test_piece_records_round_trip(dtype, tolerance):
    piece = _piece(np.random.default_rng(0))
    back = decode_piece(encode_piece(piece, audio_dtype=dtype, track_id="Track00042",
                                     piece_index=3))
    assert back["track_id"] == "Track00042" and back["piece_index"] == 3
    assert back["inputs"].dtype == np.float32 and back["inputs"].shape == (300, 128)
    assert np.abs(back["inputs"] - piece["inputs"]).max() <= tolerance
    for key in ("input_times", "input_event_start_indices", "input_event_end_indices",
                "input_state_event_indices", "targets", "state_events"):
        np.testing.assert_array_equal(back[key], piece[key])
        assert back[key].dtype == piece[key].dtype


def test_records_hold_numbers_only_and_check_their_magic():
    with pytest.raises(CacheError, match="numbers only"):
        pack_arrays({"x": np.array(["a"], object)})
    with pytest.raises(CacheError, match="magic"):
        unpack_arrays(b"\x80\x04pickle")
    arrays = unpack_arrays(pack_arrays({"s": np.float32(2.5), "e": np.zeros([0], np.int32)}))
    assert arrays["s"].shape == () and float(arrays["s"]) == 2.5 and arrays["e"].shape == (0,)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = data.tiny_dataset(tmp_path_factory)
    out = tmp_path_factory.mktemp("piece_cache") / "cache"
    manifest = build_cache(root, out, splits=("train", "validation"), num_shards=2, jobs=2,
                           progress=False)
    return root, out, manifest


def test_cache_holds_the_pieces_of_the_chain(built):
    root, out, manifest = built
    assert manifest == load_manifest(out)
    assert manifest["task"] == "slakh_notes_ties_vb1" == cache_task_name("slakh", "mt3")
    train = manifest["splits"]["train"]
    assert train["tracks"] == 2 and len(train["shards"]) == 2
    config = codec_vocabulary.get_config("mt3")
    expected = {}
    for track in read_split(root, "train"):
        tokenized = examples.tokenize_track(track.load_mix(sample_rate=16000),
                                            track_note_sequence(track), config, is_training=True)
        for i, piece in enumerate(examples.split_frames(tokenized)):
            expected[(track.track_id, i)] = piece
    cached = {}
    for path in shard_paths(out, manifest, "train"):
        reader = ArrayRecordReader(path)
        for record in reader.read_all():
            piece = decode_piece(record)
            cached[(piece["track_id"], piece["piece_index"])] = piece
        reader.close()
    assert sorted(cached) == sorted(expected) and train["pieces"] == len(expected)
    for key, piece in expected.items():
        got = cached[key]
        for name in examples.INDEX_KEYS + examples.PIECE_KEYS:
            np.testing.assert_array_equal(got[name], piece[name])
        peak = np.abs(piece["inputs"]).max()
        np.testing.assert_allclose(got["inputs"], piece["inputs"], atol=peak / 32767)
    assert train["dataset_fingerprint"] == dataset_fingerprint(root, "train")


def test_rebuild_keeps_complete_shards_and_redoes_broken_ones(built, tmp_path):
    root, out, _ = built
    copy = tmp_path / "cache"
    shutil.copytree(out, copy)
    shards = sorted((copy / "train").glob("*.array_record"))
    stamps = {p: p.stat().st_mtime_ns for p in shards}
    again = build_cache(root, copy, splits=("train", "validation"), num_shards=2,
                        progress=False)
    assert again["shards_built"] == 0 and again["shards_kept"] == 3  # train 2, validation 1 (one track)
    assert {p: p.stat().st_mtime_ns for p in shards} == stamps
    # An interrupted build: one shard lost its completion marker, the manifest is gone, and a
    # temporary file was left behind. Only that shard is rebuilt.
    (copy / "manifest.json").unlink()
    shards[1].with_name(shards[1].name + ".json").unlink()
    resumed = build_cache(root, copy, splits=("train", "validation"), num_shards=2,
                          progress=False)
    assert resumed["shards_built"] == 1 and resumed["shards_kept"] == 2
    assert shards[0].stat().st_mtime_ns == stamps[shards[0]]
    assert resumed["splits"] == again["splits"]


def test_a_cache_of_another_task_or_dataset_is_refused(built, tmp_path):
    root, out, manifest = built
    check_manifest(manifest, vocab="mt3", dataset_name="slakh", program_source="slakh_class",
                   splits=("train", "validation"),
                   dataset_fingerprints={"train": dataset_fingerprint(root, "train")})
    with pytest.raises(CacheError, match="manifest codec"):
        check_manifest({**manifest, "task": cache_task_name("slakh", "ismir2021")},
                       vocab="ismir2021", dataset_name="slakh")
    with pytest.raises(CacheError, match="manifest task"):
        check_manifest(manifest, vocab="mt3", dataset_name="other")
    with pytest.raises(CacheError, match="program_source"):
        check_manifest(manifest, vocab="mt3", dataset_name="slakh", program_source="midi")
    with pytest.raises(CacheError, match="split 'test' is not in the cache"):
        check_manifest(manifest, vocab="mt3", dataset_name="slakh", splits=("test",))
    with pytest.raises(CacheError, match="other data"):
        check_manifest(manifest, vocab="mt3", dataset_name="slakh",
                       dataset_fingerprints={"train": "0" * 64})
    with pytest.raises(CacheError, match="--overwrite"):
        build_cache(root, out, splits=("train",), settings=CacheSettings(vocab="ismir2021"),
                    progress=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CacheError, match="not an mt3x piece cache"):
        load_manifest(tmp_path)
    with pytest.raises(CacheError, match="no cache manifest"):
        load_manifest(tmp_path / "missing")


def test_cli_cache_builds_and_reports_bad_input(built, tmp_path, capsys):
    root, _, _ = built
    assert data_cli.main(["cache", str(root), "--out", str(tmp_path / "c"), "--splits", "train",
                          "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train: 2 tracks" in out and "slakh_notes_ties_vb1" in out
    assert load_manifest(tmp_path / "c")["splits"].keys() == {"train"}
    assert data_cli.main(["cache", str(tmp_path / "nothing"), "--out", str(tmp_path / "d"),
                          "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    assert data_cli.main(["cache", str(root), "--out", str(tmp_path / "c"), "--vocab",
                          "ismir2021", "--splits", "train", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
