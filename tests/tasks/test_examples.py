"""mt3x.tasks.examples on single examples, outside tf.data (what a Grain driver will call)."""

from __future__ import annotations

import subprocess
import sys

import note_seq
import numpy as np
import pytest

from mt3x.audio.mt3_config import mt3_frame_times, mt3_sample_frames
from mt3x.codec import run_length
from mt3x.tasks import examples
from mt3x.tasks.codec import get_pipeline_codec

MT3 = get_pipeline_codec("mt3")
CODEC = MT3.codec


def test_examples_import_neither_jax_tensorflow_nor_seqio():
    code = ("import sys, mt3x.tasks.examples, mt3x.tasks.codec, mt3x.tasks.counters, "
            "mt3x.data.slakh, mt3x.data.midi; "
            "print('loaded:', sorted(m for m in ('jax', 'tensorflow', 'seqio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    # Only our line: pretty_midi's optional pyfluidsynth import may print where it found the lib.
    assert [line for line in out.stdout.splitlines() if line.startswith("loaded:")] == ["loaded: []"]


def _track(seconds: float = 6.0, seed: int = 0) -> tuple[np.ndarray, note_seq.NoteSequence]:
    rng = np.random.default_rng(seed)
    ns = note_seq.NoteSequence(ticks_per_quarter=220)
    for k in range(24):
        start = round(k * (seconds - 0.5) / 24, 2)
        ns.notes.add(pitch=48 + k, velocity=100, start_time=start, end_time=start + 0.4,
                     program=int(rng.choice([0, 33, 40])))
    ns.notes.add(pitch=36, velocity=100, start_time=1.0, end_time=1.05, is_drum=True)
    ns.total_time = seconds
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), ns


def _notes(ns, t_lo=-1.0, t_hi=1e9):
    return sorted((n.pitch, n.is_drum, 0 if n.is_drum else n.program, round(n.start_time, 2))
                  for n in ns.notes if t_lo <= n.start_time < t_hi)


def test_one_training_example_through_the_whole_chain():
    audio, ns = _track()
    track = examples.tokenize_track(audio, ns.SerializeToString(), MT3.config, is_training=True)
    np.testing.assert_array_equal(track["inputs"], mt3_sample_frames(audio))
    np.testing.assert_array_equal(track["input_times"],
                                  mt3_frame_times(len(audio) // 128 + 1).astype(np.float32))
    pieces = examples.split_frames(track, 300)
    assert [len(p["inputs"]) for p in pieces] == [300, 300, 151]   # 6 s -> 751 frames (MT3 pads a frame)
    assert all(p["targets"] is track["targets"] for p in pieces)
    chunk = examples.select_random_chunk(pieces[1], 256, np.random.default_rng(3))
    ex = examples.extract_target_sequence(chunk, MT3.tie_id)
    ex = examples.map_program_granularity(ex, CODEC, "full")
    ex = examples.run_length_encode_shifts(ex, CODEC)
    ex = examples.remove_redundant_state_changes(ex, CODEC)
    assert not examples.targets_too_long(ex)
    final = examples.append_eos(ex, CODEC)
    assert final["targets"][-1] == 1 and final["targets"].dtype == np.int32
    np.testing.assert_array_equal(final["targets"][:-1], ex["targets"] + 3)
    # The chunk's targets decode to the notes whose onsets lie inside the chunk.
    t0 = float(chunk["input_times"][0])
    t1 = float(chunk["input_times"][-1]) + 0.008
    frame = int(round(t0 * 125))
    # (Notes of the tie section have no opener in a lone segment; the decoder counts them as
    # invalid and drops them. The onsets inside the chunk are what is checked.)
    decoded, _, _ = MT3.decode_segments([ex["targets"]],
                                        [float(mt3_frame_times(frame + 1)[frame])])
    assert _notes(decoded, t0 + 0.01, t1 - 0.01) == _notes(ns, t0 + 0.01, t1 - 0.01)
    assert len(_notes(ns, t0 + 0.01, t1 - 0.01)) >= 3


def test_random_chunk_is_seeded_uniform_and_reaches_the_edges():
    example = {k: np.arange(600) for k in examples.FRAME_KEYS}
    example.update(targets=np.zeros([3], np.int32), state_events=np.zeros([0], np.int32))
    starts = [examples.random_chunk_bounds(600, 256, seed) for seed in range(400)]
    assert starts == [examples.random_chunk_bounds(600, 256, seed) for seed in range(400)]
    rng = np.random.default_rng(0)
    drawn = [examples.random_chunk_bounds(600, 256, rng) for _ in range(400)]
    assert len(set(drawn)) > 100                              # the generator advances
    assert sum(a == 0 for a, _ in drawn) > 40                 # clipped at the start
    assert sum(b == 600 for _, b in drawn) > 40               # clipped at the end
    assert all(0 <= a < b <= 600 and b - a <= 256 for a, b in drawn)
    chunk = examples.select_random_chunk(example, 256, 7)
    a, b = examples.random_chunk_bounds(600, 256, 7)
    np.testing.assert_array_equal(chunk["input_times"], np.arange(a, b))
    empty = {k: v[:0] for k, v in example.items()}
    assert examples.select_random_chunk(empty, 256, 0) is None


def _rle(ns, seconds):
    frames = mt3_sample_frames(np.zeros(int(seconds * 16000), np.float32))
    track = examples.tokenize_track(np.zeros(int(seconds * 16000), np.float32), ns,
                                    MT3.config, is_training=True)
    ex = examples.extract_target_sequence(track, MT3.tie_id)
    return {"inputs": frames, "targets": examples.run_length_encode_shifts(ex, CODEC)["targets"]}


def test_mix_sums_normalises_and_merges():
    a_ns, b_ns = _track(2.0, seed=1)[1], _track(1.0, seed=2)[1]
    a, b = _rle(a_ns, 2.0), _rle(b_ns, 1.0)
    a["inputs"] = np.full_like(a["inputs"], 0.25)
    b["inputs"] = np.full_like(b["inputs"], -0.75)
    mixed = examples.mix_examples([a, b], CODEC)
    assert mixed["inputs"].shape == a["inputs"].shape and mixed["inputs"].dtype == np.float32
    np.testing.assert_allclose(mixed["inputs"][0], -1.0)                 # (0.25 - 0.75) / 0.5
    np.testing.assert_allclose(mixed["inputs"][-1], 0.5)                 # 0.25 / 0.5 (b ended)
    np.testing.assert_array_equal(mixed["targets"], run_length.merge_run_length_encoded_targets(
        [a["targets"], b["targets"]], CODEC, combine_tie_sections=True))
    padded = np.zeros([2, max(len(a["targets"]), len(b["targets"]))], np.int32)
    padded[0, :len(a["targets"])], padded[1, :len(b["targets"])] = a["targets"], b["targets"]
    np.testing.assert_array_equal(   # the tf driver passes zero-padded rows: same result
        examples.mix_examples([{"inputs": a["inputs"], "targets": padded[0]},
                               {"inputs": b["inputs"], "targets": padded[1]}], CODEC)["targets"],
        mixed["targets"])
    silent = examples.mix_examples([{"inputs": np.zeros([3, 128]), "targets": [5]}], CODEC)
    assert not silent["inputs"].any()
    assert 1 <= examples.mix_group_size(0, 3) <= 3
    assert {examples.mix_group_size(s, 3) for s in range(50)} == {1, 2, 3}
    with pytest.raises(ValueError, match="no examples"):
        examples.mix_examples([], CODEC)


def test_too_long_predicate_and_granularity_check():
    assert not examples.targets_too_long({"targets": np.zeros(1023)}, 1024)
    assert examples.targets_too_long({"targets": np.zeros(1024)}, 1024)
    assert not examples.targets_too_long({"targets": np.zeros(1024)}, 1024, add_eos=False)
    with pytest.raises(ValueError, match="program granularity 'coarse'"):
        examples.map_program_granularity({"targets": np.zeros(0, np.int32)}, CODEC, "coarse")
    program = CODEC.encode("program", 33)
    flat = examples.map_program_granularity({"targets": np.array([program, 5])}, CODEC, "flat")
    np.testing.assert_array_equal(flat["targets"], [5])


def test_eval_segments_tile_the_file():
    audio, ns = _track(3.0)
    track = examples.tokenize_track(audio, ns, MT3.config, is_training=False)
    track["unique_id"] = 4
    segments = examples.split_into_segments(track, 256)
    assert [len(s["inputs"]) for s in segments] == [256, 120]   # 3 s -> 376 frames
    assert [int(s["segment_index"]) for s in segments] == [0, 1]
    assert all(int(s["num_segments"]) == 2 and s["unique_id"] == 4 for s in segments)
    assert segments[0]["sequence"] == track["sequence"] and segments[1]["sequence"] == b""
    assert segments[1]["start_time"] == np.float32(track["input_times"][256])
    np.testing.assert_array_equal(np.concatenate([s["inputs"] for s in segments]),
                                  track["inputs"])
