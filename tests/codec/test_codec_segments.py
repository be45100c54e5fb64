"""The training-chain helpers on a hand-worked example (mt3 and ismir2021 configs), whole-file
segmentation edge cases and bad input."""

import note_seq
import numpy as np
import pytest

from mt3x.codec import (EOS_ID, NoteSequenceError, audio_frame_times, chunk_targets,
                        finalize_targets, get_config, merge_run_length_encoded_targets,
                        note_sequence_to_segments, num_audio_frames, tokenize_note_sequence,
                        tokens_to_note_sequence)


def _example():
    ns = note_seq.NoteSequence(ticks_per_quarter=220)
    ns.notes.add(pitch=60, start_time=0.5, end_time=3.0, velocity=80, program=0)
    ns.notes.add(pitch=40, start_time=2.5, end_time=2.7, velocity=70, program=33)
    ns.notes.add(pitch=36, start_time=2.2, end_time=2.25, velocity=100, is_drum=True)
    ns.total_time = 3.0
    return ns


def P(p): return 1001 + p          # noqa: E704  mt3 codec indices
def V(b): return 1129 + b          # noqa: E704
def PROG(p): return 1132 + p       # noqa: E704
def DRUM(d): return 1260 + d       # noqa: E704
TIE = 1131


def test_frames_follow_mt3_padding():
    assert num_audio_frames(0) == 1 and num_audio_frames(127) == 1
    assert num_audio_frames(128) == 2  # MT3 always pads, a whole frame at exact multiples
    np.testing.assert_allclose(audio_frame_times(16000 * 5)[[0, 1, 625]], [0, 0.008, 5.0])


def test_float32_frame_times_warn_and_differ():
    t64 = audio_frame_times(16000 * 5)
    with pytest.warns(UserWarning, match="float32"):
        t32 = tokenize_note_sequence(_example(), t64.astype(np.float32), "mt3", is_training=True)
    t64 = tokenize_note_sequence(_example(), t64, "mt3", is_training=True)
    # Frame 5 starts at 0.04 s exactly; float32(0.04) < 0.04 lands in step 3 instead of 4.
    assert t64.event_start_indices[5] != t32.event_start_indices[5]


def test_mt3_chunk_targets_hand_worked():
    cfg = get_config("mt3")
    indexed = tokenize_note_sequence(_example(), audio_frame_times(16000 * 5), cfg,
                                     is_training=True)
    # Frames [256, 512) = 2.048 s .. 4.096 s; frame 256 lies in step 204 (2.04 s).
    tokens = chunk_targets(indexed, 256, 512, cfg)
    np.testing.assert_array_equal(tokens, [
        PROG(0), P(60), TIE,                       # the piano note is sounding
        16, V(1), DRUM(36),                        # 2.20 s = 16 steps after 2.04 s
        46, PROG(33), V(1), P(40),                 # 2.50 s
        66, PROG(33), V(0), P(40),                 # 2.70 s
        96, PROG(0), V(0), P(60)])                 # 3.00 s
    ids = finalize_targets(tokens, cfg)
    np.testing.assert_array_equal(ids - 3 * (ids != EOS_ID), [
        PROG(0), P(60), TIE, 16, V(1), DRUM(36), 46, PROG(33), P(40), 66, V(0), P(40), 96,
        PROG(0), P(60), EOS_ID])
    assert ids.dtype == np.int32 and ids[-1] == EOS_ID
    # Decoding this chunk alone: the tie and the final note-off refer to a note this decoder
    # never saw; both are counted as invalid, the drum and bass notes are recovered.
    res = tokens_to_note_sequence([(2.048, ids)], cfg, from_model_ids=True)
    notes = sorted((round(n.start_time, 6), round(n.end_time, 6), n.pitch, n.program, n.is_drum)
                   for n in res.note_sequence.notes)
    assert notes == [(2.2, 2.21, 36, 0, True), (2.5, 2.7, 40, 33, False)]
    assert (res.invalid_events, res.dropped_events) == (2, 0)


def test_cached_chunk_slices_give_the_same_targets():
    cfg = get_config("mt3")
    indexed = tokenize_note_sequence(_example(), audio_frame_times(16000 * 5), cfg,
                                     is_training=True)
    piece = indexed.slice_frames(200, 600)  # MT3 splits files into cached pieces of frames
    assert piece.num_frames == 400 and piece.events is indexed.events
    np.testing.assert_array_equal(chunk_targets(piece, 56, 312, cfg),
                                  chunk_targets(indexed, 256, 512, cfg))
    restored = type(indexed).from_features(indexed.to_features())
    assert set(indexed.to_features()) == {"targets", "input_event_start_indices",
                                          "input_event_end_indices", "state_events",
                                          "input_state_event_indices"}
    np.testing.assert_array_equal(chunk_targets(restored, 256, 512, cfg),
                                  chunk_targets(indexed, 256, 512, cfg))


def test_ismir2021_chunk_targets_flat_no_ties():
    cfg = get_config("ismir2021")
    indexed = tokenize_note_sequence(_example(), audio_frame_times(16000 * 5), cfg,
                                     is_training=True)
    v = lambda b: 1129 + b  # noqa: E731  (same offsets below the tie for 127 bins)
    drum = lambda d: 1001 + 128 + 128 + 1 + 128 + d  # noqa: E731
    np.testing.assert_array_equal(chunk_targets(indexed, 256, 512, cfg), [
        16, v(100), drum(36), 46, v(70), P(40), 66, v(0), P(40), 96, v(0), P(60)])


def test_merge_for_mixing_keeps_time_order():
    cfg = get_config("mt3")
    a = chunk_targets(tokenize_note_sequence(_example(), audio_frame_times(16000 * 5), cfg,
                                             is_training=True), 256, 512, cfg)
    other = note_seq.NoteSequence()
    other.notes.add(pitch=72, start_time=2.3, end_time=2.6, velocity=50, program=40)
    b = chunk_targets(tokenize_note_sequence(other, audio_frame_times(16000 * 5), cfg,
                                             is_training=True), 256, 512, cfg)
    # MT3's merge: both tie sections at step 0, the second stream's first.
    merged = merge_run_length_encoded_targets([a, b], cfg.codec)
    np.testing.assert_array_equal(merged[:4], [TIE, PROG(0), P(60), TIE])
    res = tokens_to_note_sequence([(2.048, finalize_targets(merged, cfg))], cfg,
                                  from_model_ids=True)
    notes = sorted((round(n.start_time, 6), n.pitch) for n in res.note_sequence.notes)
    assert notes == [(2.04, 60), (2.2, 36), (2.3, 72), (2.5, 40)]  # 60 read as an onset
    # Opt-in: one combined tie section.
    merged = merge_run_length_encoded_targets([a, b], cfg.codec, combine_tie_sections=True)
    np.testing.assert_array_equal(merged[:4], [PROG(0), P(60), TIE, 16])
    state_res = tokens_to_note_sequence([(0.0, [TIE, V(1), P(60)]), (2.048, merged)], cfg)
    notes = sorted((round(n.start_time, 6), round(n.end_time, 6), n.pitch)
                   for n in state_res.note_sequence.notes)
    assert notes == [(0.0, 3.0, 60), (2.2, 2.21, 36), (2.3, 2.6, 72), (2.5, 2.7, 40)]
    assert state_res.invalid_events == 0


def test_whole_file_segments_and_layout():
    cfg = get_config("mt3")
    segments = note_sequence_to_segments(_example(), cfg, num_samples=16000 * 5)
    assert [(s.frame_start, s.frame_end) for s in segments] == [(0, 256), (256, 512),
                                                                (512, 626)]
    assert [s.start_time for s in segments] == [0.0, 2.04, 4.09]
    res = tokens_to_note_sequence(segments, cfg)
    # MT3 quirk kept for parity: frames after the last event step keep the state from before
    # that step, so the last segment re-declares the piano note that ended at 3.0 s; the
    # decoder counts that tie as invalid and the notes are unaffected.
    np.testing.assert_array_equal(segments[2].tokens, [PROG(0), P(60), TIE])
    assert (res.invalid_events, res.dropped_events) == (1, 0)
    assert sorted((round(n.start_time, 6), round(n.end_time, 6), n.pitch, n.velocity)
                  for n in res.note_sequence.notes) == [
        (0.5, 3.0, 60, 127), (2.2, 2.21, 36, 127), (2.5, 2.7, 40, 127)]


def test_empty_sequence_gives_empty_tie_sections():
    segments = note_sequence_to_segments(note_seq.NoteSequence(), "mt3", num_samples=16000 * 3)
    assert len(segments) == 2
    for s in segments:
        np.testing.assert_array_equal(s.tokens, [TIE])
    res = tokens_to_note_sequence(segments, "mt3")
    assert len(res.note_sequence.notes) == 0 and res.invalid_events == 0


def test_bad_note_sequences_raise():
    ns = _example()
    ns.notes[1].start_time = -0.1
    with pytest.raises(NoteSequenceError, match="song.mid: note 1.*start_time must be >= 0"):
        note_sequence_to_segments(ns, "mt3", source="song.mid")
    ns = _example()
    ns.notes[0].end_time = ns.notes[0].start_time
    with pytest.raises(NoteSequenceError, match="zero-length"):
        tokenize_note_sequence(ns, audio_frame_times(16000), "mt3", is_training=True)
    with pytest.raises(ValueError, match="frame range"):
        chunk_targets(tokenize_note_sequence(_example(), audio_frame_times(16000), "mt3",
                                             is_training=True), 10, 5, "mt3")
