"""Tests of the seqio tasks: shapes, decodable targets, counted overlong targets, eval tiling,
mixing, mixture rates, determinism, and the demo dataset end to end."""

from __future__ import annotations

import note_seq
import numpy as np
import pytest
import seqio

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG, mt3_frame_times
from mt3x.tasks import preprocessors as pp
from mt3x.tasks import registry as tasks
from mt3x.codec import note_events
from mt3x.tasks.codec import get_pipeline_codec

MT3 = get_pipeline_codec("mt3")
LENGTHS = {"inputs": 256, "targets": 1024}


def toy_track(seed: int, seconds: float = 5.0, notes: int = 30, drums: int = 8,
              programs: tuple[int, ...] = (0, 33, 40, 73)) -> dict:
    """A random multi-instrument track: notes (some held across chunk boundaries) and drums."""
    rng = np.random.default_rng(seed)
    ns = note_seq.NoteSequence(ticks_per_quarter=220)
    for _ in range(notes):
        start = float(rng.uniform(0, seconds - 0.3))
        end = min(seconds, start + float(rng.uniform(0.05, 2.5)))
        ns.notes.add(pitch=int(rng.integers(40, 90)), velocity=int(rng.integers(20, 127)),
                     start_time=start, end_time=end, program=int(rng.choice(programs)))
    for _ in range(drums):
        start = float(rng.uniform(0, seconds - 0.1))
        ns.notes.add(pitch=int(rng.choice([36, 38, 42])), velocity=100, start_time=start,
                     end_time=start + 0.05, is_drum=True)
    ns.total_time = seconds
    audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    return {"audio": audio, "sequence": ns.SerializeToString(), "track_id": f"Track{seed:05d}"}


@pytest.fixture(scope="module")
def toy_tasks():
    tracks = {"train": [toy_track(i) for i in range(3)], "validation": [toy_track(10)],
              "test": [toy_track(11, seconds=3.0)]}
    names = tasks.register_in_memory_tasks(tracks, "toyslakh", "mt3", shuffle_buffer_size=16)
    return names, tracks


def test_task_names_follow_mt3(toy_tasks):
    names, _ = toy_tasks
    assert names == {"train": "toyslakh_notes_ties_vb1_train",
                     "eval_train": "toyslakh_notes_ties_vb1_eval_train",
                     "validation": "toyslakh_notes_ties_vb1_validation",
                     "test": "toyslakh_notes_ties_vb1_test",
                     "eval": "toyslakh_notes_ties_vb1_eval"}
    mixture = seqio.get_mixture_or_task(names["eval"])
    assert sorted(t.name for t in mixture.tasks) == sorted([names["eval_train"],
                                                            names["validation"]])


def test_train_examples_decode_to_the_notes_of_their_chunk(toy_tasks):
    names, tracks = toy_tasks
    task = seqio.get_mixture_or_task(names["train"])
    reference = {}
    for track in tracks["train"]:
        ns = note_events.prepare_note_sequence(
            note_seq.NoteSequence.FromString(track["sequence"]), is_training=True)
        reference[track["track_id"]] = ns
    examples = list(task.get_dataset(LENGTHS, split="train", shuffle=False, seed=5,
                                     num_epochs=4).as_numpy_iterator())
    assert len(examples) == 12
    checked_ties = 0
    for ex in examples:
        assert ex["inputs"].dtype == np.float32 and ex["inputs"].shape[1] == 128
        assert 0 < ex["inputs"].shape[0] <= 256 and ex["targets"].dtype == np.int32
        t0 = float(ex["input_times"][0])
        t1 = float(ex["input_times"][-1]) + 0.008
        # Which track: the audio identifies it.
        track = next(t for t in tracks["train"]
                     if np.array_equal(t["audio"][int(round(t0 * 16000)):][:128],
                                       ex["inputs"][0][:len(t["audio"][int(round(t0 * 16000)):][:128])]))
        ns = reference[track["track_id"]]
        last_event = max(max(n.start_time, n.end_time) for n in ns.notes)
        if t0 > last_event - 0.02:
            continue  # MT3's indexing keeps a stale state dump after the last event
        codec_tokens = ex["targets"][:-1] - 3
        assert ex["targets"][-1] == 1 and codec_tokens.min() >= 0
        tie_at = np.flatnonzero(codec_tokens == MT3.tie_id)
        assert len(tie_at) == 1
        # The tie section declares exactly the non-drum notes sounding at the chunk's first
        # step (onset before it, offset at or after it).
        # The chunk's first frame and its step from the float64 frame time the encoder indexed
        # with (float32 input_times can sit just below a step: 0.64 -> 0.6399999857).
        frame = int(round(t0 * MT3_SPECTROGRAM_CONFIG.frames_per_second))
        t0 = float(mt3_frame_times(frame + 1)[frame])
        s0 = int(np.floor(t0 * 100))
        sounding = {(n.program, n.pitch) for n in ns.notes if not n.is_drum
                    and round(n.start_time * 100) < s0 <= round(n.end_time * 100)}
        declared, program = set(), None
        for tok in codec_tokens[:tie_at[0]]:
            if MT3.layout.program[0] <= tok <= MT3.layout.program[1]:
                program = int(tok - MT3.layout.program[0])
            elif MT3.layout.pitch[0] <= tok <= MT3.layout.pitch[1]:
                declared.add((program, int(tok - MT3.layout.pitch[0])))
        assert declared == sounding
        checked_ties += len(sounding)
        # Decode after a one-step segment that opens the tied notes, as the previous segment of
        # the file would: no token of the chunk may be invalid.
        opener = [MT3.tie_id]   # an empty tie section, then the onsets
        for prog, pitch in sorted(sounding):
            opener += [MT3.codec.encode("program", prog), MT3.codec.encode("velocity", 1),
                       MT3.codec.encode("pitch", pitch)]
        if sounding:
            decoded, invalid, dropped = MT3.decode_segments(
                [np.asarray(opener, np.int32), codec_tokens], [s0 / 100 - 0.01, t0])
        else:
            decoded, invalid, dropped = MT3.decode_segments([codec_tokens], [t0])
        assert (invalid, dropped) == (0, 0)
        for note in ns.notes:
            key = (note.program, note.pitch)
            if note.is_drum or key not in sounding or note.end_time > t1 - 0.02:
                continue
            if not round(note.start_time * 100) < s0 <= round(note.end_time * 100):
                continue
            tied = [d for d in decoded.notes if (d.program, d.pitch) == key
                    and abs(d.start_time - (s0 / 100 - 0.01)) < 1e-6]
            assert len(tied) == 1 and abs(tied[0].end_time - note.end_time) <= 0.01 + 1e-6
        # Every note with its onset well inside the chunk is decoded within 10 ms.
        inside = [n for n in ns.notes if t0 + 0.02 <= n.start_time <= t1 - 0.02]
        for note in inside:
            match = [d for d in decoded.notes if d.pitch == note.pitch and d.is_drum ==
                     note.is_drum and (note.is_drum or d.program == note.program)
                     and abs(d.start_time - note.start_time) <= 0.01 + 1e-6]
            assert match, f"note {note.pitch}@{note.start_time:.3f} missing in chunk {t0:.3f}"
            if not note.is_drum and note.end_time <= t1 - 0.02:
                assert any(abs(d.end_time - note.end_time) <= 0.01 + 1e-6 for d in match)
        # No decoded onset inside the chunk that is not a reference onset.
        for d in decoded.notes:
            if d.start_time >= t0:
                assert any(n.pitch == d.pitch and abs(n.start_time - d.start_time) <= 0.011
                           for n in ns.notes)
    assert checked_ties > 0


def test_overlong_targets_are_counted_not_crashing():
    dense = toy_track(99, seconds=4.0, notes=1500, drums=400)
    names = tasks.register_in_memory_tasks({"train": [dense, toy_track(98)]}, "toydense")
    pp.reset_pipeline_counters()
    task = seqio.get_mixture_or_task(names["train"])
    examples = list(task.get_dataset(LENGTHS, split="train", shuffle=False, seed=0,
                                     num_epochs=3).as_numpy_iterator())
    counts = pp.pipeline_counters(names["train"])
    assert counts["examples_seen"] == 6
    assert counts["examples_too_long"] >= 2        # the dense track's chunks do not fit
    assert len(examples) == 6 - counts["examples_too_long"]
    assert all(len(ex["targets"]) <= 1024 for ex in examples)


def test_eval_segments_tile_the_whole_file(toy_tasks):
    names, tracks = toy_tasks
    segments = list(tasks.eval_segments(names["validation"]))
    audio = tracks["validation"][0]["audio"]
    n_frames = len(audio) // 128 + 1
    assert [s["segment_index"] for s in segments] == [0, 1, 2]
    assert all(s["num_segments"] == 3 for s in segments)
    np.testing.assert_allclose([s["start_time"] for s in segments], [0.0, 2.048, 4.096],
                               atol=1e-6)
    frames = np.concatenate([s["inputs"] for s in segments])
    assert frames.shape == (n_frames, 128)
    np.testing.assert_array_equal(frames.reshape(-1)[:len(audio)], audio)
    assert not frames.reshape(-1)[len(audio):].any()
    ref = note_seq.NoteSequence.FromString(segments[0]["sequence"])
    assert len(ref.notes) == 38 and all(s["sequence"] == b"" for s in segments[1:])
    assert all(s["track_id"] == b"Track00010" and s["unique_id"] == 0 for s in segments)
    np.testing.assert_array_equal(segments[0]["targets"], [1])


def test_mixing_merges_token_streams_in_time_order():
    # One program per track, so that mixed notes never collide on a (program, pitch).
    tracks = {"train": [toy_track(20 + i, notes=12, drums=4, programs=(p,))
                        for i, p in enumerate([0, 33, 40, 73, 24, 56])]}
    names = tasks.register_in_memory_tasks(tracks, "toymix", max_examples_per_mix=3)
    task = seqio.get_mixture_or_task(names["train"])
    examples = list(task.get_dataset(LENGTHS, split="train", shuffle=False, seed=1,
                                     num_epochs=6).as_numpy_iterator())
    assert 36 / 3 <= len(examples) < 36          # groups of 1..3 examples
    for ex in examples:
        assert np.isclose(np.abs(ex["inputs"]).max(), 1.0)      # peak-normalised mix
        tokens = ex["targets"][:-1] - 3
        assert (tokens == MT3.tie_id).sum() == 1                # one united tie section
        shifts = tokens[MT3.layout.is_shift(tokens)]
        assert np.all(np.diff(shifts) > 0)                      # merged in time order
        # Open the tied notes in a preceding segment, then every token of the mix is valid.
        tie_at = int(np.flatnonzero(tokens == MT3.tie_id)[0])
        opener, program = [MT3.tie_id], None
        for tok in tokens[:tie_at]:
            if MT3.layout.program[0] <= tok <= MT3.layout.program[1]:
                program = tok
            else:
                opener += [program, MT3.codec.encode("velocity", 1), tok]
        decoded, invalid, dropped = MT3.decode_segments(
            [np.asarray(opener, np.int32), tokens], [0.0, 0.01])
        assert (invalid, dropped) == (0, 0)
        assert len(decoded.notes) >= tie_at // 2


def test_mixture_rate_is_n_to_the_0_3():
    a = tasks.register_in_memory_tasks({"train": [toy_track(i, 1.0) for i in range(3)]}, "ra")
    b = tasks.register_in_memory_tasks({"train": [toy_track(i, 1.0) for i in range(7)]}, "rb")
    name = tasks.register_mixture("rab_train", [a["train"], b["train"]])
    mixture = seqio.get_mixture_or_task(name)
    rates = {t.name: mixture.get_rate(t) for t in mixture.tasks}
    assert rates[a["train"]] == pytest.approx(3 ** 0.3)
    assert rates[b["train"]] == pytest.approx(7 ** 0.3)


def test_train_batches_are_deterministic_by_seed(toy_tasks):
    names, _ = toy_tasks

    def first(seed, n=2):
        it = tasks.make_train_batches(names["train"], batch_size=3, seed=seed)
        return [next(it) for _ in range(n)]

    a, b, c = first(0), first(0), first(1)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not all(np.array_equal(x["decoder_target_tokens"], y["decoder_target_tokens"])
                   for x, y in zip(a, c))
    batch = a[0]
    assert batch["encoder_input_tokens"].shape == (3, 256, 128)
    assert batch["encoder_input_tokens"].dtype == np.float32
    lengths = np.concatenate([x["encoder_input_lengths"] for x in a])
    assert lengths.dtype == np.int32 and a[0]["encoder_input_lengths"].shape == (3,)
    assert lengths.min() >= 1 and lengths.max() <= 256
    for x in a:                              # rows past a chunk's length are padding
        for row, length in zip(x["encoder_input_tokens"], x["encoder_input_lengths"]):
            assert not row[length:].any()
    for key in ("decoder_input_tokens", "decoder_target_tokens"):
        assert batch[key].shape == (3, 1024) and batch[key].dtype == np.int32
    assert batch["decoder_loss_weights"].dtype == np.float32
    np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 1:],
                                  batch["decoder_target_tokens"][:, :-1])
    np.testing.assert_array_equal(batch["decoder_loss_weights"],
                                  (batch["decoder_target_tokens"] > 0).astype(np.float32))


def test_log_mel_inputs_switch():
    # In CI (no longer marked slow): one 2 s toy track, ~3 s of CPU.
    names = tasks.register_in_memory_tasks({"train": [toy_track(1, 2.0)]}, "toymel",
                                           inputs="log_mel")
    assert names["train"] == "toymel_notes_ties_logmel_vb1_train"
    task = seqio.get_mixture_or_task(names["train"])
    ex = next(task.get_dataset(LENGTHS, split="train", shuffle=False, seed=0).as_numpy_iterator())
    n = len(ex["raw_inputs"]) // 128
    assert ex["inputs"].shape == (n, 512) and ex["inputs"].dtype == np.float32
    from mt3x.audio import mt3_log_mel
    padded = np.zeros([1, 256, 128], np.float32)
    padded[0, :n] = ex["raw_inputs"].reshape(n, 128)
    np.testing.assert_allclose(ex["inputs"], np.asarray(mt3_log_mel(padded))[0, :n], atol=1e-5)


@pytest.mark.slow
def test_demo_dataset_flows_into_numpy_batches(tmp_path_factory):
    from mt3x.data.presets import build_demo

    _check_demo_flows(build_demo(tmp_path_factory.mktemp("demo") / "demo", seed=0), "demo", 4)


def test_demo_dataset_flows_into_numpy_batches_fast(tmp_path_factory):
    """The fast variant (runs in CI): 5 pieces of 5 s (2 train, 1 validation, 2 test), batch 2."""
    from mt3x.data.presets import build_demo

    root = build_demo(tmp_path_factory.mktemp("demo_small") / "demo", seed=0, max_pieces=5,
                      split_counts=(2, 1, 2), segment_seconds=5.0)
    _check_demo_flows(root, "demosmall", 2)


def _check_demo_flows(root, name: str, batch_size: int) -> None:
    """Train batches and eval segments of a demo dataset with 2 test tracks."""
    from mt3x.audio.io import read_audio

    names = tasks.register_slakh_tasks(root, name=name, vocab="mt3", in_memory_cache=True)
    assert names["train"] == f"{name}_notes_ties_vb1_train"
    batches = tasks.make_train_batches(names["train"], batch_size=batch_size, seed=0)
    for _ in range(2):
        batch = next(batches)
        assert batch["encoder_input_tokens"].shape == (batch_size, 256, 128)
        assert batch["decoder_target_tokens"].shape == (batch_size, 1024)
        assert (batch["decoder_target_tokens"] == 1).sum() == batch_size  # one EOS per row
        assert batch["decoder_loss_weights"].sum() > batch_size           # notes, not just EOS
    segments = list(tasks.eval_segments(names["test"]))
    by_track: dict[bytes, list] = {}
    for s in segments:
        by_track.setdefault(s["track_id"], []).append(s)
    assert len(by_track) == 2
    for track_id, segs in by_track.items():
        mix, _ = read_audio(root / "test" / track_id.decode() / "mix.flac", sample_rate=16000)
        assert sum(len(s["inputs"]) for s in segs) == len(mix) // 128 + 1
        assert [s["segment_index"] for s in segs] == list(range(len(segs)))
        ref = note_seq.NoteSequence.FromString(segs[0]["sequence"])
        assert len(ref.notes) > 0
