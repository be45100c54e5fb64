"""mt3x.codec: NoteSequence <-> MT3 tokens (numpy/python; no JAX, no TensorFlow).

Token-for-token compatible with magenta/mt3 (`event_codec`, `vocabularies`, `note_sequences`,
`run_length_encoding`, `metrics_utils`), so MT3 checkpoints decode through it unchanged.

Quick use::

    from mt3x import codec
    segs = codec.note_sequence_to_segments(ns, "mt3")          # whole file -> 256-frame segments
    ids = codec.get_config("mt3").vocabulary.encode(segs[0].tokens)   # model ids (codec + 3)
    res = codec.tokens_to_note_sequence(segs, "mt3")           # -> DecodeResult
    res.note_sequence, res.invalid_events, res.dropped_events

Modules: `codec` (Event, EventRange, Codec), `vocabulary` (configs, velocity bins, program
granularity, model ids), `note_events` (NoteSequence -> timed events, ties state), `event_index`
(event stream indexed by audio frame), `run_length` (shift RLE, redundancy removal, mixing
merge), `decoding` (state machine back to a NoteSequence), `segments` (one-call helpers and the
training chain, step by step).
"""

from mt3x.codec.codec import Codec, CodecError, Event, EventRange
from mt3x.codec.decoding import (DecodeResult, NoteDecodingState, assign_instruments,
                                 begin_tied_pitches_section, count_duplicate_notes,
                                 decode_events, hit_token_limit,
                                 decode_note_event, decode_note_onset_event,
                                 flush_note_decoding_state, tokens_to_note_sequence)
from mt3x.codec.event_index import (IndexedEvents, audio_frame_times, encode_and_index_events,
                                    extract_target_sequence, num_audio_frames, step_floor)
from mt3x.codec.note_events import (NoteEncodingState, NoteEventData, NoteSequenceError,
                                    apply_sustain, drop_zero_length_notes,
                                    note_encoding_state_to_events, note_event_data_to_events,
                                    note_sequence_to_onsets, note_sequence_to_onsets_and_offsets,
                                    note_sequence_to_onsets_and_offsets_and_programs,
                                    prepare_note_sequence, trim_overlapping_notes,
                                    validate_note_sequence)
from mt3x.codec.run_length import (merge_run_length_encoded_targets,
                                   remove_redundant_state_changes, run_length_encode_shifts)
from mt3x.codec.segments import (Segment, chunk_targets, finalize_targets,
                                 note_sequence_to_segments, tokenize_note_sequence)
from mt3x.codec.vocabulary import (DECODED_EOS_ID, DECODED_INVALID_ID, DEFAULT_EXTRA_IDS,
                                   EOS_ID, NUM_SPECIAL_TOKENS, PAD_ID, PRESETS,
                                   PROGRAM_GRANULARITY_NAMES, UNK_ID, TokenVocabulary,
                                   TranscriptionConfig, VocabularyConfig, bin_to_velocity,
                                   build_codec, drop_programs, get_config, map_program_tokens,
                                   program_map_fn, programs_to_midi_classes, velocity_to_bin,
                                   vocabulary_from_codec)

__all__ = [name for name in dir() if not name.startswith("_")]
