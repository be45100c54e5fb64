"""One NoteSequence per Slakh track: what the demo and evaluation score against is what training
teaches (same programs, same sustained offsets)."""

from __future__ import annotations

import numpy as np
import pretty_midi
import yaml

from mt3x.audio.io import write_audio
from mt3x.data.slakh import read_track
from mt3x.tasks import examples
from mt3x.tasks.codec import get_pipeline_codec
from mt3x.tasks.sources import SlakhDataSource

MT3 = get_pipeline_codec("mt3")
STEMS = {  # name: (inst_class, program_num, is_drum, notes, sustain pedal (down, up) or None)
    "S00": ("Distorted Electric Guitar", 30, False, [(52, 0.2, 0.5), (55, 1.0, 1.3)], None),
    "S01": ("Drums", 128, True, [(36, 0.0, 0.1), (38, 0.75, 0.8)], None),
    "S02": ("Electric Bass", 34, False, [(40, 0.5, 0.7), (43, 1.6, 1.9)], (0.6, 1.4)),
}


def _write_track(folder) -> None:
    (folder / "stems").mkdir(parents=True)
    (folder / "MIDI").mkdir()
    meta = {"stems": {}}
    silence = np.zeros(3 * 16000, np.float32)
    for name, (inst_class, program, is_drum, notes, pedal) in STEMS.items():
        meta["stems"][name] = {"inst_class": inst_class, "program_num": program,
                               "is_drum": is_drum, "audio_rendered": True}
        midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
        inst = pretty_midi.Instrument(program=0, is_drum=is_drum)  # metadata programs win
        inst.notes = [pretty_midi.Note(100, p, s, e) for p, s, e in notes]
        if pedal:
            inst.control_changes = [pretty_midi.ControlChange(64, 127, pedal[0]),
                                    pretty_midi.ControlChange(64, 0, pedal[1])]
        midi.instruments.append(inst)
        midi.write(str(folder / "MIDI" / f"{name}.mid"))
        write_audio(folder / "stems" / f"{name}.wav", silence, 16000)
    write_audio(folder / "mix.wav", silence, 16000)
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))


def _key(note, offsets=True):
    end = round(note.end_time, 2) if offsets and not note.is_drum else None
    return (note.pitch, note.is_drum, note.program, round(note.start_time, 2), end)


def test_reference_notes_equal_the_notes_training_targets_encode(tmp_path):
    _write_track(tmp_path / "test" / "Track00001")
    track = read_track(tmp_path / "test" / "Track00001")
    demo_reference = track.note_sequence()          # what mt3x-demo scores its transcription on
    source = SlakhDataSource(tmp_path)
    audio, sequence, _, _ = source.load_example("test", 0)
    eval_reference = examples.tokenize_track(audio, sequence, MT3.config,
                                             is_training=False)["sequence"]
    assert sorted(map(_key, demo_reference.notes)) == sorted(
        map(_key, type(demo_reference).FromString(eval_reference).notes))

    # Slakh-class programs (Guitar 30 -> 29, Bass 34 -> 33, drums on program 0) and the pedal
    # holding the bass note 40 to 1.4 s.
    assert sorted(map(_key, demo_reference.notes)) == sorted([
        (52, False, 29, 0.2, 0.5), (55, False, 29, 1.0, 1.3), (36, True, 0, 0.0, None),
        (38, True, 0, 0.75, None), (40, False, 33, 0.5, 1.4), (43, False, 33, 1.6, 1.9)])

    # Training: the whole file as one chunk, through the chain, decoded back to notes.
    tokens = examples.tokenize_track(audio, sequence, MT3.config, is_training=True)
    ex = examples.extract_target_sequence(tokens, MT3.tie_id)
    ex = examples.run_length_encode_shifts(ex, MT3.codec)
    ex = examples.remove_redundant_state_changes(ex, MT3.codec)
    decoded, invalid, dropped = MT3.decode_segments([ex["targets"]], [0.0])
    assert (invalid, dropped) == (0, 0)
    assert sorted(map(_key, decoded.notes)) == sorted(map(_key, demo_reference.notes))

    # program_source='midi' keeps the metadata programs; sustain=False the raw note ends.
    raw = track.note_sequence(program_source="midi", sustain=False)
    assert {(n.program, n.is_drum) for n in raw.notes} == {(30, False), (128, True), (34, False)}
    assert max(n.end_time for n in raw.notes if n.pitch == 40) == 0.7
