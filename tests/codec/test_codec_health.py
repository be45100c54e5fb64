"""Decoding health: invalid events, duplicate notes and segments that hit the token limit,
counted on a constructed pair of model-id segments whose faults are known."""

import note_seq
import numpy as np

from mt3x.codec import (EOS_ID, PAD_ID, UNK_ID, count_duplicate_notes, get_config,
                        hit_token_limit, tokens_to_note_sequence)
from mt3x.transcription.notes import tokens_to_notes

LENGTH = 16


def _segment(events, *, eos: bool, extra_ids=()):
    """Model ids of codec events ((type, value) pairs), optional raw ids, EOS and PAD."""
    config = get_config("mt3")
    codec_tokens = [config.codec.encode(t, v) for t, v in events]
    ids = list(config.vocabulary.encode(codec_tokens)) + list(extra_ids)
    if eos:
        ids.append(EOS_ID)
    filler = PAD_ID if eos else int(config.vocabulary.encode([config.codec.encode("shift", 1)])[0])
    ids += [filler] * (LENGTH - len(ids))
    assert len(ids) == LENGTH
    return np.asarray(ids, np.int32)


def _file():
    """Two segments: the first ends with EOS and holds one duplicate onset and one note-off of
    a silent pitch; the second has an UNK id and never emits EOS (runs to the limit)."""
    first = _segment([("tie", 0), ("shift", 10), ("program", 0), ("velocity", 1),
                      ("pitch", 60), ("pitch", 60),             # same onset twice: a duplicate
                      ("velocity", 0), ("pitch", 64)],          # off of a silent pitch: invalid
                     eos=True)
    second = _segment([("pitch", 60), ("tie", 0), ("shift", 5), ("velocity", 1),
                       ("pitch", 67)], eos=False, extra_ids=[UNK_ID])
    return np.stack([first, second]), [0.0, 2.048]


def test_health_counters_on_a_constructed_file():
    tokens, starts = _file()
    result = tokens_to_notes(tokens, starts, "mt3")
    assert result.invalid_events == 2        # the note-off of pitch 64 and the UNK id
    assert result.duplicate_notes == 1       # two notes of pitch 60 starting at 0.1 s
    assert result.truncated_segments == 1    # the second segment has no EOS
    assert result.dropped_events == 0
    onsets = sorted((round(n.start_time, 3), n.pitch) for n in result.note_sequence.notes)
    assert onsets == [(0.1, 60), (0.1, 60), (2.09, 67)]


def test_a_clean_file_reports_no_faults():
    first = _segment([("tie", 0), ("shift", 10), ("program", 0), ("velocity", 1),
                      ("pitch", 60), ("shift", 20), ("pitch", 62)], eos=True)
    result = tokens_to_notes(first[None], [0.0], "mt3")
    assert (result.invalid_events, result.duplicate_notes, result.truncated_segments) == (0, 0, 0)
    # Codec indices carry no EOS: no segment counts as truncated.
    codec = tokens_to_note_sequence([(0.0, [get_config("mt3").codec.encode("shift", 1)])], "mt3")
    assert codec.truncated_segments == 0


def test_hit_token_limit_and_duplicates_directly():
    assert hit_token_limit([5, 6, 7]) and not hit_token_limit([5, EOS_ID, 0])
    assert not hit_token_limit([])
    ns = note_seq.NoteSequence()
    for start, pitch, program, drum in [(0.100, 60, 0, False), (0.1004, 60, 0, False),
                                        (0.100, 60, 1, False), (0.100, 36, 0, True),
                                        (0.100, 36, 5, True), (0.2, 60, 0, False)]:
        ns.notes.add(start_time=start, end_time=start + 0.1, pitch=pitch, program=program,
                     is_drum=drum, velocity=100)
    # Same 10 ms step, pitch and program: the second note; drums ignore the program.
    assert count_duplicate_notes(ns) == 2
