"""Event codec and vocabulary: magenta/mt3's event_codec_test / vocabularies_test as golden values,
plus the released configurations' layouts and sizes."""

import numpy as np
import pytest

from mt3x.codec import (Codec, CodecError, Event, EventRange, TokenVocabulary, bin_to_velocity,
                        get_config, map_program_tokens, program_map_fn, velocity_to_bin)


def _pitch_codec() -> Codec:
    return Codec(max_shift_steps=100, steps_per_second=100,
                 event_ranges=[EventRange("pitch", 0, 127)])


def test_encode_decode_golden():
    ec = _pitch_codec()
    events = [Event("pitch", 60), Event("shift", 5), Event("pitch", 62)]
    encoded = [ec.encode_event(e) for e in events]
    assert encoded == [161, 5, 163]
    assert [ec.decode_event_index(i) for i in encoded] == events


def test_shift_steps_golden():
    ec = _pitch_codec()
    assert ec.max_shift_steps == 100
    assert not ec.is_shift_event_index(-1)
    assert ec.is_shift_event_index(0)
    assert ec.is_shift_event_index(100)
    assert not ec.is_shift_event_index(101)


def test_codec_errors_name_the_problem():
    ec = _pitch_codec()
    with pytest.raises(CodecError, match="not within valid range"):
        ec.encode_event(Event("pitch", 128))
    with pytest.raises(CodecError, match="unknown event type 'velocity'"):
        ec.encode_event(Event("velocity", 1))
    with pytest.raises(CodecError, match="unknown event index 229"):
        ec.decode_event_index(229)
    with pytest.raises(CodecError, match="unknown event index -1"):
        ec.decode_event_index(-1)
    with pytest.raises(CodecError, match="unique"):
        Codec(10, 100, [EventRange("pitch", 0, 1), EventRange("pitch", 0, 1)])
    assert isinstance(CodecError("x"), ValueError)


@pytest.mark.parametrize("name, bins, classes, vocab_size, embeddings", [
    ("mt3", 1, 1388, 1491, 1536),
    ("ismir2021", 127, 1514, 1617, 1664),
])
def test_released_config_sizes(name, bins, classes, vocab_size, embeddings):
    cfg = get_config(name)
    assert cfg.vocab.num_velocity_bins == bins
    assert cfg.codec.num_classes == classes
    assert cfg.vocabulary.vocab_size == vocab_size
    assert cfg.vocabulary.num_embeddings == embeddings


def test_mt3_layout():
    cfg = get_config("mt3")
    c = cfg.codec
    assert c.event_type_range("shift") == (0, 1000)
    assert c.event_type_range("pitch") == (1001, 1128)
    assert c.event_type_range("velocity") == (1129, 1130)
    assert c.event_type_range("tie") == (1131, 1131)
    assert c.event_type_range("program") == (1132, 1259)
    assert c.event_type_range("drum") == (1260, 1387)
    assert c.steps_per_second == 100
    assert (cfg.use_ties, cfg.program_granularity, cfg.inputs_length) == (True, "full", 256)
    assert cfg.vocab.abbrev_str == "vb1"
    ism = get_config("ismir2021")
    assert (ism.use_ties, ism.program_granularity, ism.inputs_length) == (False, "flat", 512)
    assert ism.codec.event_type_range("drum") == (1386, 1513)
    assert ism.vocab.abbrev_str == ""
    with pytest.raises(CodecError, match="unknown vocabulary config"):
        get_config("mt4")


def test_velocity_quantization_golden():
    assert velocity_to_bin(0, 1) == 0
    assert velocity_to_bin(0, 127) == 0
    assert bin_to_velocity(0, 1) == 0
    assert bin_to_velocity(0, 127) == 0
    assert velocity_to_bin(bin_to_velocity(1, 1), 1) == 1
    for b in range(1, 128):
        assert velocity_to_bin(bin_to_velocity(b, 127), 127) == b
    # With one bin every onset decodes to 127.
    assert {velocity_to_bin(v, 1) for v in range(1, 128)} == {1}
    assert bin_to_velocity(1, 1) == 127
    assert velocity_to_bin(64, 2) == 2 and velocity_to_bin(63, 2) == 1


def test_token_vocabulary_golden():
    vocab = TokenVocabulary(32, extra_ids=0)
    np.testing.assert_array_equal(vocab.encode([1, 2, 3]), [4, 5, 6])
    np.testing.assert_array_equal(vocab.decode([4, 5, 6]), [1, 2, 3])
    vocab4 = TokenVocabulary(32, extra_ids=4)
    np.testing.assert_array_equal(vocab4.decode([0, 2, 3, 4, 34, 35]), [-2, -2, 0, 1, 31, -2])
    # decode stops after the first EOS (-1)
    np.testing.assert_array_equal(vocab.decode([0, 2, 3, 4, 1, 0, 1, 0]), [-2, -2, 0, 1, -1])
    np.testing.assert_array_equal(vocab.decode_to_codec_tokens([0, 2, 3, 4, 1, 0, 1, 0]),
                                  [-2, -2, 0, 1])
    vocab.encode([0, 15, 31])
    with pytest.raises(CodecError, match="valid range"):
        vocab.encode([-1, 15, 31])
    with pytest.raises(CodecError, match="valid range"):
        vocab.encode([0, 15, 32])
    assert vocab.encode([0]).dtype == np.int32


def test_program_granularity():
    c = get_config("mt3").codec
    lo, _ = c.event_type_range("program")
    tokens = np.array([5, lo + 0, 1010, lo + 9, lo + 127, 1300])
    np.testing.assert_array_equal(map_program_tokens(tokens, c, "flat"), [5, 1010, 1300])
    np.testing.assert_array_equal(map_program_tokens(tokens, c, "midi_class"),
                                  [5, lo, 1010, lo + 8, lo + 120, 1300])
    np.testing.assert_array_equal(map_program_tokens(tokens, c, "full"), tokens)
    assert [program_map_fn(g)(42) for g in ("flat", "midi_class", "full")] == [0, 40, 42]
    with pytest.raises(CodecError, match="granularity"):
        map_program_tokens(tokens, c, "coarse")


def test_codec_imports_neither_jax_nor_tensorflow():
    import subprocess
    import sys
    code = ("import sys, mt3x.codec; "
            "bad = [m for m in ('jax', 'tensorflow', 'flax') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
