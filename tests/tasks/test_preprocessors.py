"""Tests of the MT3 preprocessing stages (tf.data stages over mt3x.tasks.examples, vocabulary,
converter). The numpy functions on their own: test_examples.py."""

from __future__ import annotations

import note_seq
import numpy as np
import pytest
import seqio
import tensorflow as tf

from mt3x.audio.mt3_config import mt3_frame_times, mt3_sample_frames
from mt3x.codec import decoding, event_index, run_length
from mt3x.codec.segments import tokenize_note_sequence
from mt3x.tasks import examples
from mt3x.tasks import preprocessors as pp
from mt3x.tasks.feature_converters import ContinuousInputsEncDecFeatureConverter
from mt3x.tasks.codec import get_pipeline_codec
from mt3x.tasks.vocab import CodecVocabulary

MT3 = get_pipeline_codec("mt3")
CODEC = MT3.codec


def ev(kind: str, value: int) -> int:
    return CODEC.encode(kind, value)


# ----------------------------------------------------------------------------- layout


def test_layout_matches_mt3_codec():
    # shift 0..1000 | pitch 128 | velocity 2 | tie 1 | program 128 | drum 128 = 1388 classes.
    ranges = {name: CODEC.event_type_range(name)
              for name in ("shift", "pitch", "velocity", "tie", "program", "drum")}
    assert ranges == {"shift": (0, 1000), "pitch": (1001, 1128), "velocity": (1129, 1130),
                      "tie": (1131, 1131), "program": (1132, 1259), "drum": (1260, 1387)}
    assert CODEC.num_classes == 1388
    assert (MT3.layout.pitch, MT3.layout.program, MT3.layout.tie) == ((1001, 1128),
                                                                      (1132, 1259), 1131)
    assert MT3.tie_id == 1131 and get_pipeline_codec("ismir2021").tie_id is None
    np.testing.assert_array_equal(MT3.layout.is_shift([-1, 0, 1000, 1001]),
                                  [False, True, True, False])


# ----------------------------------------------------------------------------- targets


def _note_sequence(notes, drums=()) -> note_seq.NoteSequence:
    ns = note_seq.NoteSequence(ticks_per_quarter=220)
    for pitch, program, start, end in notes:
        ns.notes.add(pitch=pitch, program=program, start_time=start, end_time=end, velocity=100)
    for pitch, start in drums:
        ns.notes.add(pitch=pitch, start_time=start, end_time=start + 0.05, velocity=100,
                     is_drum=True)
    ns.total_time = max(n.end_time for n in ns.notes)
    return ns


def test_extract_target_sequence_equals_codec_and_has_tie_section():
    ns = _note_sequence([(60, 0, 0.1, 1.5), (64, 33, 0.5, 0.9), (67, 40, 1.2, 2.5)],
                        drums=[(36, 0.3), (38, 1.4)])
    times = mt3_frame_times(len(mt3_sample_frames(np.zeros(int(4.0 * 16000), np.float32))))
    out = MT3.tokenize(ns.SerializeToString(), times, True)
    # The reference's frame times are built here, not by mt3_frame_times: frame i starts at
    # sample 128 i of 16 kHz audio (float64, as MT3). Had mt3_frame_times drifted to float32,
    # both sides would otherwise be indexed alike and agree.
    ref_times = np.arange(len(times)) * 128 / 16000
    np.testing.assert_array_equal(times, ref_times)
    ref_indexed = tokenize_note_sequence(ns, ref_times, MT3.config, is_training=True)
    for start, end in [(0, 256), (150, 406), (125, 126), (300, len(times))]:
        # The pipeline holds the chunk's frames only; the codec call takes the whole file.
        ours = examples.chunk_target_sequence(
            out["targets"], out["input_event_start_indices"][start:end],
            out["input_event_end_indices"][start:end], out["state_events"],
            out["input_state_event_indices"][start:end], MT3.tie_id)
        reference = event_index.extract_target_sequence(ref_indexed, start, end,
                                                        state_events_end_token=MT3.tie_id)
        np.testing.assert_array_equal(ours, reference)
    no_frames = np.zeros([0], np.int32)
    assert examples.chunk_target_sequence(out["targets"], no_frames, no_frames, out["state_events"],
                                    no_frames, MT3.tie_id).shape == (0,)
    # Frame 150 starts at 1.2 s: notes 60 (program 0) and 67 (program 40, onset exactly at
    # 1.2 s, not yet sounding before its onset event) -> tie section holds program 0 pitch 60.
    chunk = examples.chunk_target_sequence(
        out["targets"], out["input_event_start_indices"][150:406],
        out["input_event_end_indices"][150:406], out["state_events"],
        out["input_state_event_indices"][150:406], MT3.tie_id)
    tie_at = int(np.flatnonzero(chunk == MT3.tie_id)[0])
    np.testing.assert_array_equal(chunk[:tie_at + 1],
                                  [ev("program", 0), ev("pitch", 60), MT3.tie_id])


def _step_starts(targets: np.ndarray) -> np.ndarray:
    """Index in `targets` (single-step shifts) of the first event of every 10 ms step: step s
    starts just after the s-th shift."""
    shifts = np.flatnonzero(targets == ev("shift", 1))
    return np.concatenate([[0], shifts + 1])


def test_frames_are_indexed_by_integer_sample_position_not_float_times():
    """Independent of any float frame times: frame i starts at sample 128 i, so it lies in step
    floor(128 i * 100 / 16000) = 4 i // 5 (integers). Frames 5, 55 and 120 start exactly on a
    step (0.04 s, 0.44 s, 0.96 s) whose float32 time is below the float64 one: float32 frame
    times would index them into the previous step (a known MT3 parity trap)."""
    ns = _note_sequence([(60, 0, 0.04, 0.30), (64, 33, 0.44, 0.90), (67, 40, 0.96, 1.50)],
                        drums=[(36, 0.20)])
    audio = np.zeros(2 * 16000, np.float32)
    track = examples.tokenize_track(audio, ns.SerializeToString(), MT3.config, is_training=True)
    num_frames = len(audio) // 128 + 1
    frame_steps = 4 * np.arange(num_frames) // 5
    starts = _step_starts(track["targets"])
    np.testing.assert_array_equal(track["input_event_start_indices"], starts[frame_steps])
    np.testing.assert_array_equal(track["input_event_end_indices"],
                                  np.append(starts[frame_steps[1:]], len(track["targets"])))
    # Worked by hand: frames [55, 120) = steps 44 .. 95. The chunk opens on the onset at 0.44 s
    # (nothing sounds then: empty tie section), holds 46 shifts to its offset at 0.90 s and 6
    # shifts more, up to the step of frame 120 (0.96 s), whose onset belongs to the next chunk.
    chunk = examples.chunk_target_sequence(
        track["targets"], track["input_event_start_indices"][55:120],
        track["input_event_end_indices"][55:120], track["state_events"],
        track["input_state_event_indices"][55:120], MT3.tie_id)
    shift = ev("shift", 1)
    np.testing.assert_array_equal(chunk, [
        MT3.tie_id, ev("program", 33), ev("velocity", 1), ev("pitch", 64), *[shift] * 46,
        ev("program", 33), ev("velocity", 0), ev("pitch", 64), *[shift] * 6])
    # Frames 5 and 6 both lie in step 4 (0.04 s) and start at its first event, the onset of 60.
    first = track["input_event_start_indices"][5]
    assert first == track["input_event_start_indices"][6] == starts[4]
    np.testing.assert_array_equal(track["targets"][first:first + 3],
                                  [ev("program", 0), ev("velocity", 1), ev("pitch", 60)])


def test_tokenize_stage_is_examples_tokenize_track():
    """The tf.data stage returns exactly what the numpy function returns for the same track."""
    ns = _note_sequence([(60, 0, 0.1, 1.5), (64, 33, 0.5, 0.9)], drums=[(36, 0.3)])
    audio = np.random.default_rng(0).standard_normal(16000 * 3 + 77).astype(np.float32)
    ds = tf.data.Dataset.from_tensors({"audio": audio, "sequence": ns.SerializeToString(),
                                       "track_id": "Track00001"})
    (got,) = list(pp.tokenize_transcription_example(
        ds, config=MT3.config, is_training_data=True, counter_key="tok").as_numpy_iterator())
    want = examples.tokenize_track(audio, ns.SerializeToString(), MT3.config, is_training=True)
    assert set(got) == set(want) | {"track_id"}
    for key, value in want.items():
        if key == "sequence":
            assert got[key] == value
        else:
            assert got[key].dtype == value.dtype, key
            np.testing.assert_array_equal(got[key], value, err_msg=key)
    np.testing.assert_array_equal(want["inputs"], mt3_sample_frames(audio))
    assert want["inputs"].shape == (len(audio) // 128 + 1, 128)


# ----------------------------------------------------------------------------- mixing


def _rle_segment(ns: note_seq.NoteSequence, seconds: float) -> np.ndarray:
    """Run-length encoded targets (with tie section) of the first `seconds` of `ns`."""
    times = mt3_frame_times(len(mt3_sample_frames(np.zeros(int(seconds * 16000), np.float32))))
    out = MT3.tokenize(ns.SerializeToString(), times, True)
    tokens = examples.chunk_target_sequence(
        out["targets"], out["input_event_start_indices"], out["input_event_end_indices"],
        out["state_events"], out["input_state_event_indices"], MT3.tie_id)
    return run_length.run_length_encode_shifts(tokens, CODEC)


def _note_set(ns):
    return sorted((n.program, n.is_drum, n.pitch, round(n.start_time, 2), round(n.end_time, 2))
                  for n in ns.notes)


def test_merge_orders_events_by_time_and_unites_ties():
    a = _note_sequence([(60, 0, 0.10, 0.50), (62, 0, 1.00, 1.20)], drums=[(36, 0.70)])
    b = _note_sequence([(48, 33, 0.05, 0.40), (50, 33, 0.60, 1.50)])
    # The pipeline's merge (mix_transcription_examples without mt3_exact_merge).
    merged = run_length.merge_run_length_encoded_targets(
        [_rle_segment(a, 2.0), _rle_segment(b, 2.0)], CODEC, combine_tie_sections=True)
    # One (empty) tie section, then shifts strictly increasing.
    assert merged[0] == MT3.tie_id and (merged == MT3.tie_id).sum() == 1
    shifts = merged[MT3.layout.is_shift(merged)]
    assert np.all(np.diff(shifts) > 0)
    final = run_length.remove_redundant_state_changes(merged, CODEC)
    result = decoding.tokens_to_note_sequence([(0.0, final)], MT3.config)
    assert result.invalid_events == 0
    expected = _note_set(a) + _note_set(b)
    decoded = [(p, d, pitch, s, e if not d else round(s + 0.01, 2))
               for p, d, pitch, s, e in _note_set(result.note_sequence)]
    expected = [(p if not d else 0, d, pitch, s, e if not d else round(s + 0.01, 2))
                for p, d, pitch, s, e in expected]
    assert decoded == sorted(expected)


# ----------------------------------------------------------------------------- tf stages


def _features(targets_lengths):
    return tf.data.Dataset.from_generator(
        lambda: ({"inputs": np.zeros([4, 128], np.float32),
                  "targets": np.full([n], 1001, np.int32)} for n in targets_lengths),
        output_signature={"inputs": tf.TensorSpec([None, 128], tf.float32),
                          "targets": tf.TensorSpec([None], tf.int32)})


def test_skip_too_long_counts_and_never_crashes():
    pp.reset_pipeline_counters()
    features = {"targets": seqio.Feature(CodecVocabulary(1388), add_eos=True)}
    ds = pp.skip_too_long(_features([10, 2000, 1023, 1024, 5000]), features,
                          {"inputs": 256, "targets": 1024}, counter_key="t")
    kept = [len(ex["targets"]) for ex in ds.as_numpy_iterator()]
    assert kept == [10, 1023]           # 1023 + EOS fits in 1024; 1024 + EOS does not
    assert pp.pipeline_counters("t") == {"examples_seen": 5, "examples_too_long": 3}


def test_select_random_chunk_is_seeded_and_reaches_the_edges():
    n = 600
    base = {k: np.arange(n, dtype=np.float32 if k in ("input_times",) else np.int32)
            for k in pp.FRAME_KEYS if k != "inputs"}
    base["inputs"] = np.tile(np.arange(n, dtype=np.float32)[:, None], [1, 128])
    base["targets"] = np.zeros([3], np.int32)
    base["state_events"] = np.zeros([1], np.int32)
    ds = tf.data.Dataset.from_tensors(base).repeat(200)

    def starts(seed):
        with seqio.utils.map_seed_manager(seed):
            out = pp.select_random_chunk(ds, {"inputs": 256})
        return [(int(ex["input_times"][0]), len(ex["input_times"])) for ex in
                out.as_numpy_iterator()]

    a, b, c = starts(3), starts(3), starts(4)
    assert a == b and a != c
    firsts = np.array([s for s, _ in a])
    lengths = np.array([m for _, m in a])
    assert lengths.max() == 256 and lengths.min() < 256       # edge chunks are shorter
    assert (firsts == 0).sum() > 10                           # start clipped to 0 often
    assert ((firsts + lengths) == n).sum() > 10               # chunks ending at the file end


# ----------------------------------------------------------------------------- vocab, converter


def test_codec_vocabulary():
    vocab = CodecVocabulary.from_preset("mt3")
    assert (vocab.eos_id, vocab.unk_id, vocab.pad_id, vocab.extra_ids) == (1, 2, 0, 100)
    assert vocab.vocab_size == 1491 and vocab.num_embeddings == 1536
    assert CodecVocabulary.from_preset("ismir2021").num_embeddings == 1664
    assert vocab.encode([0, 5, 1387]) == [3, 8, 1390]
    assert vocab.decode([3, 8, 1390, 0, 2, 1400]) == [0, 5, 1387, -2, -2, -2]
    np.testing.assert_array_equal(vocab.decode_tf(tf.constant([3, 1, 9])).numpy(), [0, -1, -1])
    np.testing.assert_array_equal(vocab.encode_tf(tf.constant([0, 1387])).numpy(), [3, 1390])
    with pytest.raises(ValueError):
        vocab.encode([1388])


def test_feature_converter_output_matches_contract():
    ds = tf.data.Dataset.from_tensors({
        "inputs": np.ones([100, 128], np.float32),
        "targets": np.array([5, 6, 7, 1], np.int32),
        "input_times": np.zeros([100], np.float32)})
    converter = ContinuousInputsEncDecFeatureConverter(pack=False)
    out = next(converter(ds, {"inputs": 256, "targets": 1024}).as_numpy_iterator())
    assert set(out) == {"encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
                        "decoder_loss_weights", "encoder_input_lengths"}
    np.testing.assert_array_equal(out["encoder_input_lengths"], [100])   # frames before padding
    assert out["encoder_input_tokens"].shape == (256, 128)
    assert out["encoder_input_tokens"].dtype == np.float32
    assert out["encoder_input_tokens"][:100].min() == 1 and not out["encoder_input_tokens"][100:].any()
    np.testing.assert_array_equal(out["decoder_target_tokens"][:5], [5, 6, 7, 1, 0])
    np.testing.assert_array_equal(out["decoder_input_tokens"][:5], [0, 5, 6, 7, 1])
    assert out["decoder_target_tokens"].dtype == np.int32 and out["decoder_target_tokens"].shape == (1024,)
    assert out["decoder_loss_weights"].dtype == np.float32
    np.testing.assert_array_equal(out["decoder_loss_weights"][:5], [1, 1, 1, 1, 0])
    assert out["decoder_loss_weights"].sum() == 4
    with pytest.raises(ValueError):
        ContinuousInputsEncDecFeatureConverter(pack=True)
