"""Audio files -> MIDI, piano-roll PNGs and (optionally) resynthesised stems, with any
transcriber.

    >>> transcribe_files(['a.flac', 'b.wav'], transcriber=transcriber, out_dir='out')

`transcriber` is anything with `transcribe_many(audios, names) -> list[Transcription]`: a
checkpoint's `mt3x.transcription.decoder.Transcriber` or a bundle's
`mt3x.bundles.mt3_runtime.BundleTranscriber`; this module imports neither (gin:
`transcriber = @mt3x.load_transcriber()`). Files are read, resampled to 16 kHz
and mixed to mono, transcribed in groups (the segments of a group's files are decoded together),
and written as `<out_dir>/<name>.mid` (+ `<name>.png`, + `<name>/<instrument>.wav`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence

import note_seq
import numpy as np

from mt3x.audio.io import read_audio
from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.errors import Mt3xError
from mt3x.transcription.errors import TranscriptionError
from mt3x.transcription.midi_output import plot_notes, write_midi
from mt3x.transcription.notes import Transcription
from mt3x.transcription.pianoroll import plot_transcription
from mt3x.transcription.resynthesis import RenderedStem, render_stems
from mt3x.transcription.segments import check_audio


class WaveformTranscriber(Protocol):
    """What `transcribe_files` needs: several float32[samples] 16 kHz waveforms (named for error
    messages) -> one Transcription each."""

    def transcribe_many(self, audios: Sequence[np.ndarray],
                        names: Sequence[str] | None = None) -> list[Transcription]: ...


@dataclasses.dataclass
class FileTranscription:
    """What `transcribe_files` wrote for one audio file (`stems`: `RenderedStem`s, with
    `stems=True`)."""

    audio_path: Path
    midi_path: Path
    pianoroll_path: Path | None
    num_notes: int
    num_instruments: int
    invalid_events: int
    dropped_events: int
    audio_seconds: float
    stems: list[RenderedStem] = dataclasses.field(default_factory=list)
    truncated_segments: int = 0
    duplicate_notes: int = 0


def transcribe_files(audio_paths: Iterable[str | os.PathLike], *,
                     transcriber: WaveformTranscriber, out_dir: str | os.PathLike,
                     references: Sequence[note_seq.NoteSequence | None] | None = None,
                     pianoroll: bool = True, files_per_group: int = 16,
                     on_error: Callable[[Path, Mt3xError], None] | None = None,
                     stems: bool = False, soundfont: str | os.PathLike | None = None,
                     stems_sample_rate: int = 44100) -> list[FileTranscription]:
    """Transcribes audio files to `<out_dir>/<stem>.mid` (+ `<stem>.png` piano roll).

    Args:
      audio_paths: audio files (any rate; resampled to 16 kHz, mixed to mono).
      transcriber: a loaded `Transcriber` or `BundleTranscriber` (anything with
        `transcribe_many`).
      out_dir: output folder (created).
      references: optional reference NoteSequence per file; the piano roll then marks true
        positives, false positives and false negatives per instrument.
      pianoroll: write the PNGs.
      files_per_group: files whose segments are batched together (bounds memory).
      on_error: called with (path, error) for a file that cannot be read or transcribed (too
        short, silent, unreadable; it is then skipped) or whose stems cannot be rendered (its
        MIDI is kept); None: such a file raises.
      stems: also render each transcribed instrument through `soundfont` to
        `<out_dir>/<stem>/<instrument>.wav` (+ mix.wav) at `stems_sample_rate` Hz, as long as
        the input (see `mt3x.transcription.resynthesis.render_stems`).

    Returns:
      one FileTranscription per transcribed file, in input order. Output names are the file
      stems, made unique over all inputs (e.g. Track00001_mix, Track00002_mix).

    Raises:
      AudioError / TranscriptionError / RenderError naming the file.
    """
    paths = [Path(p) for p in audio_paths]
    if references is not None and len(references) != len(paths):
        raise TranscriptionError(f"got {len(references)} references for {len(paths)} files")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output_names = unique_stems(paths)
    written: list[FileTranscription] = []
    for group_start in range(0, len(paths), max(files_per_group, 1)):
        group = list(range(group_start, min(group_start + files_per_group, len(paths))))
        audios, kept = [], []
        for i in group:
            try:
                audio = read_audio(paths[i], sample_rate=MT3_SPECTROGRAM_CONFIG.sample_rate)[0]
                audios.append(check_audio(audio, source=str(paths[i])))
                kept.append(i)
            except Mt3xError as err:
                if on_error is None:
                    raise
                on_error(paths[i], err)
        results = transcriber.transcribe_many(audios, [str(paths[i]) for i in kept])
        for i, result in zip(kept, results):
            ns = result.note_sequence
            midi_path = write_midi(ns, out_dir / f"{output_names[i]}.mid")
            png = None
            if pianoroll:
                png = out_dir / f"{output_names[i]}.png"
                reference = references[i] if references is not None else None
                if reference is not None:
                    plot_transcription(reference, ns, png, title=paths[i].name)
                else:
                    plot_notes(ns, png, title=f"{paths[i].name}: {len(ns.notes)} notes")
            rendered = []
            if stems:
                try:
                    rendered = render_stems(
                        ns, out_dir / output_names[i],
                        num_samples=round(result.audio_seconds * stems_sample_rate),
                        sample_rate=stems_sample_rate, soundfont=soundfont)
                except Mt3xError as err:  # e.g. the soundfont lacks a transcribed program
                    if on_error is None:
                        raise
                    on_error(paths[i], err)
            instruments = {(n.is_drum, 0 if n.is_drum else n.program) for n in ns.notes}
            written.append(FileTranscription(
                audio_path=paths[i], midi_path=midi_path, pianoroll_path=png,
                num_notes=len(ns.notes), num_instruments=len(instruments),
                invalid_events=result.invalid_events, dropped_events=result.dropped_events,
                audio_seconds=result.audio_seconds, stems=rendered,
                truncated_segments=result.truncated_segments,
                duplicate_notes=result.duplicate_notes))
    return written


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output names: the file stem; stems shared by several inputs get their folder's name in
    front (mix.flac of several Slakh tracks -> Track00001_mix), then a counter if still equal."""
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    stems = [f"{p.parent.name}_{p.stem}" if counts[p.stem] > 1 and p.parent.name else p.stem
             for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for stem in stems:
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        unique.append(stem if count == 0 else f"{stem}_{count}")
    return unique
