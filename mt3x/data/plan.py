"""Build configuration and planning: which pieces go to which split, and what each track holds.

Planning is pure and seeded: it turns loaded pieces into `TrackPlan`s (stems as ready-to-render
`pretty_midi.Instrument`s plus their metadata), so rendering needs no further random choices and
the plan is the same for any number of worker processes.

Modes:
- `same-piece`: all parts of one piece (a random window of `segment_seconds` when set).
- `random-mix`: `random_mix_stems` parts, each from a different piece of the same split, looped
  (repeated at the piece's length) or cut to a common length.
- `unison`: one part doubled on two instruments (`unison_programs`), the second transposed by
  `unison_transpose` semitones (default two octaves down).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pretty_midi

from mt3x.data import generator as generator_lib
from mt3x.data import instruments as instruments_lib
from mt3x.data import programs as programs_lib
from mt3x.data import sources
from mt3x.data.augment import Augmentation
from mt3x.errors import Mt3xError

MODES = ("same-piece", "random-mix", "unison")
SPLITS = ("train", "validation", "test")
SOURCES = ("music21", "midi-dir", "none")
PURPOSES = ("training", "evaluation")
# music21 composers a training build may draw on; the others are reserved for evaluation.
TRAINING_COMPOSERS = ("bach",)


class BuildError(Mt3xError):
    """A build configuration is invalid or a build step failed."""


#: (section, field, default) of build options added after builder version 1: recorded in
#: build.yaml only when set, so earlier builds keep their build.yaml and can resume.
_ADDED_AFTER_V1 = (("generator", "ensemble_probability", 0.0),)


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything that determines a synthetic Slakh build (with `seed`, the output bytes).

    Attributes (sources): source 'music21' (composer(s), comma-separated, / collection filter),
      'midi-dir' (`midi_dir`) or 'none'; num_parts keeps pieces with exactly that many parts (None:
      any), min_parts those with at least that many; max_pieces keeps the first pieces after
      listing (a seeded sample when sample_pieces); generated_pieces adds that many pieces from
      the procedural generator (`generator` settings). purpose 'training' refuses music21 composers
      other than Bach (reserved for evaluation).
    Attributes (tracks): modes are cycled over the `mixes_per_piece` mixes of each piece;
      segment_seconds crops tracks (None: whole piece); tail_seconds of release after the music;
      drums_every > 0 adds a generated drum part to every n-th track (0-based index % n == 0);
      drums_probability adds a generated groove to that share of the tracks that have no drums.
    Attributes (sound): sample_rate Hz; soundfont path (None: TimGM6mb); soundfonts, when given,
      names (see mt3x.data.soundfonts) or paths, one drawn per stem; renderer backend;
      normalize_loudness to normalization_factor LUFS per stem before augmentation; target_peak_db
      for the one overall gain; audio_format 'flac' or 'wav'.
    Attributes (splits): split_counts gives pieces per split (train, validation, test); otherwise
      split_fractions.
    """

    source: str = "music21"
    composer: str | None = "bach"
    collection: str | None = "chorales"
    midi_dir: str | None = None
    num_parts: int | None = 4
    min_parts: int | None = None
    max_pieces: int | None = None
    sample_pieces: bool = False
    generated_pieces: int = 0
    generator: generator_lib.GeneratorConfig = generator_lib.GeneratorConfig()
    purpose: str = "training"
    modes: tuple[str, ...] = ("same-piece",)
    mixes_per_piece: int = 1
    recipe: instruments_lib.Recipe = instruments_lib.Recipe()
    segment_seconds: float | None = None
    tail_seconds: float = 1.0
    random_mix_stems: int = 4
    unison_programs: tuple[int, int] = (0, 24)
    unison_transpose: int = -24
    drums_every: int = 0
    drums_probability: float = 0.0
    augmentation: Augmentation = Augmentation()
    sample_rate: int = 16000
    soundfont: str | None = None
    soundfonts: tuple[str, ...] = ()
    renderer: str = "auto"
    normalize_loudness: bool = True
    normalization_factor: float = -13.0
    target_peak_db: float = -1.0
    audio_format: str = "flac"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_counts: tuple[int, int, int] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise BuildError(f"source: expected one of {SOURCES}, got {self.source!r}")
        if self.source == "midi-dir" and not self.midi_dir:
            raise BuildError("source midi-dir: --midi-dir is required")
        if self.purpose not in PURPOSES:
            raise BuildError(f"purpose: expected one of {PURPOSES}, got {self.purpose!r}")
        if self.purpose == "training" and self.source == "music21":
            reserved = [c for c in composers(self.composer) if c not in TRAINING_COMPOSERS]
            if reserved or self.composer is None:
                raise BuildError(f"composer: {self.composer!r} is reserved for evaluation (training builds "
                                 f"draw only on {TRAINING_COMPOSERS} from music21's corpus; see --preset ood-eval)")
        if self.source == "none" and self.generated_pieces < 1:
            raise BuildError("source none: expected generated_pieces >= 1")
        if self.generated_pieces < 0:
            raise BuildError(f"generated_pieces: expected >= 0, got {self.generated_pieces}")
        if not 0.0 <= self.drums_probability <= 1.0:
            raise BuildError(f"drums_probability: expected 0..1, got {self.drums_probability}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise BuildError(f"modes: expected a non-empty list from {MODES}, got {list(self.modes)}")
        if self.mixes_per_piece < 1:
            raise BuildError(f"mixes_per_piece: expected >= 1, got {self.mixes_per_piece}")
        if not 8000 <= self.sample_rate <= 96000:
            raise BuildError(f"sample_rate: expected 8000..96000 Hz, got {self.sample_rate}")
        if self.segment_seconds is not None and self.segment_seconds <= 0:
            raise BuildError(f"segment_seconds: expected > 0, got {self.segment_seconds}")
        if self.audio_format not in ("flac", "wav"):
            raise BuildError(f"audio_format: expected 'flac' or 'wav', got {self.audio_format!r}")
        if self.random_mix_stems < 1:
            raise BuildError(f"random_mix_stems: expected >= 1, got {self.random_mix_stems}")
        if self.target_peak_db > 0:
            raise BuildError(f"target_peak_db: expected <= 0 dBFS, got {self.target_peak_db}")
        fractions = np.asarray(self.split_fractions, float)
        if fractions.shape != (3,) or np.any(fractions < 0) or fractions.sum() <= 0:
            raise BuildError(f"split_fractions: expected three non-negative numbers, got {self.split_fractions}")

    def to_dict(self) -> dict:
        """Plain, YAML-safe description (recorded in build.yaml). Options added after builder
        version 1 appear only when set, so earlier builds keep their build.yaml and resume."""
        out = dataclasses.asdict(self)
        for section, field, default in _ADDED_AFTER_V1:
            values = out.get(section) or {}
            if values.get(field) == default:
                values.pop(field)
        return _plain(out)


def composers(text: str | None) -> list[str]:
    """'mozart, haydn' -> ['mozart', 'haydn'] (lower case); None -> []."""
    return [c.strip().lower() for c in (text or "").split(",") if c.strip()]


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclasses.dataclass
class StemPlan:
    """One stem to render: its MIDI and its metadata fields."""

    instrument: pretty_midi.Instrument
    program: int
    is_drum: bool
    inst_class: str
    source_piece: str
    source_part: str
    transpose: int = 0
    soundfont: str = ""


@dataclasses.dataclass
class TrackPlan:
    """One track: id, split, mode, seed, music length (s) and stems."""

    index: int
    track_id: str
    split: str
    mode: str
    seed: int
    length_seconds: float
    stems: list[StemPlan]
    tempo_bpm: float = 120.0

    @property
    def source_pieces(self) -> list[str]:
        return sorted({s.source_piece for s in self.stems})


def split_pieces(piece_ids: Sequence[str], config: BuildConfig) -> dict[str, list[str]]:
    """Assigns each piece to exactly one split (seeded shuffle of the sorted ids)."""
    ids = sorted(piece_ids)
    order = np.random.default_rng([config.seed, 0x5EED]).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    if config.split_counts is not None:
        counts = list(config.split_counts)
        if sum(counts) > len(ids):
            raise BuildError(f"split_counts {tuple(counts)} need {sum(counts)} pieces, only {len(ids)} loaded")
    else:
        fractions = np.asarray(config.split_fractions, float) / sum(config.split_fractions)
        n_val = int(round(fractions[1] * len(ids)))
        n_test = int(round(fractions[2] * len(ids)))
        if len(ids) >= 3:
            n_val = max(n_val, 1) if fractions[1] > 0 else 0
            n_test = max(n_test, 1) if fractions[2] > 0 else 0
        counts = [len(ids) - n_val - n_test, n_val, n_test]
    out, start = {}, 0
    for split, count in zip(SPLITS, counts):
        out[split] = sorted(shuffled[start:start + count])
        start += count
    return out


def _window(piece: sources.Piece, length: float | None, rng: np.random.Generator) -> tuple[float, float]:
    end = piece.end_time
    if length is None or length >= end:
        return 0.0, end
    start = round(float(rng.uniform(0.0, end - length)), 2)
    return start, start + length


def _stem(inst: pretty_midi.Instrument, choice: instruments_lib.InstrumentChoice, piece: str,
          part: str, transpose: int = 0) -> StemPlan:
    inst.program, inst.is_drum = int(choice.program), bool(choice.is_drum)
    return StemPlan(inst, choice.program, choice.is_drum, choice.inst_class, piece, part, transpose)


def plan_tracks(pieces: dict[str, sources.Piece], config: BuildConfig,
                soundfonts: Sequence[str] = ()) -> list[TrackPlan]:
    """Plans every track of a build from loaded pieces (already filtered).

    Track ids are numbered from 1 across splits (train first, then validation, test), Slakh-style.
    Each stem gets a soundfont path drawn from `soundfonts` (default: `config.soundfont`).
    """
    soundfonts = [str(s) for s in soundfonts] or [str(config.soundfont or "")]
    splits = split_pieces(list(pieces), config)
    plans: list[TrackPlan] = []
    for split in SPLITS:
        for piece_id in splits[split]:
            for mix in range(config.mixes_per_piece):
                mode = config.modes[mix % len(config.modes)]
                index = len(plans)
                rng = np.random.default_rng([config.seed, index, 0x7AC])
                stems, length = _plan_stems(mode, pieces[piece_id], pieces, splits[split], config, rng)
                if config.drums_every and index % config.drums_every == 0:
                    drums = sources.drum_part(length, pieces[piece_id].tempo_bpm, rng)
                    choice = instruments_lib.InstrumentChoice(0, True, instruments_lib.DRUMS_CLASS)
                    stems.append(_stem(drums.instrument, choice, "generated:drums", "Drums"))
                if config.drums_probability and not any(s.is_drum for s in stems) \
                        and rng.uniform() < config.drums_probability:
                    stems.append(_groove(length, pieces[piece_id].tempo_bpm, config, rng))
                stems = [s for s in stems if s.instrument.notes]
                for stem in stems:  # no draw with one soundfont: older builds keep their bytes
                    stem.soundfont = soundfonts[int(rng.integers(len(soundfonts)))] if len(soundfonts) > 1 \
                        else soundfonts[0]
                plans.append(TrackPlan(index=index, track_id=f"Track{index + 1:05d}", split=split,
                                       mode=mode, seed=int(rng.integers(2**31)),
                                       length_seconds=round(length, 4), stems=stems,
                                       tempo_bpm=round(float(pieces[piece_id].tempo_bpm), 2)))
    return plans


def _groove(length: float, tempo_bpm: float, config: BuildConfig, rng: np.random.Generator) -> StemPlan:
    """A generated 4/4 drum groove, its kit drawn like any drum part of the recipe."""
    inst = generator_lib.drum_groove(length, min(max(float(tempo_bpm), 60.0), 200.0), (4, 4), rng)
    if config.recipe.kind == "slakh":
        ((choice, _),) = programs_lib.choose_programs([programs_lib.PartInfo(0, True, 0, 0)], rng,
                                                      set_name=config.recipe.program_set)
    else:
        choice = instruments_lib.InstrumentChoice(0, True, instruments_lib.DRUMS_CLASS)
    return _stem(inst, choice, "generated:drums", "Drums")


def _assign(picked: list[tuple[pretty_midi.Instrument, str, str]], config: BuildConfig,
            rng: np.random.Generator) -> list[StemPlan]:
    """Instruments for (instrument, part name, piece id) triples by the config's recipe; the
    `slakh` recipe also transposes parts by octaves into their program's range."""
    if config.recipe.kind != "slakh":
        choices = config.recipe.choose([(int(i.program), bool(i.is_drum)) for i, _, _ in picked], rng)
        return [_stem(inst, choice, pid, name) for (inst, name, pid), choice in zip(picked, choices)]
    infos = []
    for inst, _, _ in picked:
        pitches = [n.pitch for n in inst.notes] or [60]
        infos.append(programs_lib.PartInfo(int(inst.program), bool(inst.is_drum), min(pitches), max(pitches)))
    drawn = programs_lib.choose_programs(infos, rng, set_name=config.recipe.program_set)
    stems = []
    for (inst, name, pid), (choice, shift) in zip(picked, drawn):
        inst = sources.transpose_instrument(inst, shift) if shift else inst
        stems.append(_stem(inst, choice, pid, name, shift))
    return stems


def _plan_stems(mode: str, piece: sources.Piece, pieces: dict[str, sources.Piece],
                split_ids: list[str], config: BuildConfig, rng: np.random.Generator
                ) -> tuple[list[StemPlan], float]:
    if mode == "same-piece":
        start, end = _window(piece, config.segment_seconds, rng)
        picked = [(sources.crop_instrument(part.instrument, start, end), part.name, piece.piece_id)
                  for part in piece.parts]
        return _assign(picked, config, rng), end - start
    if mode == "unison":
        start, end = _window(piece, config.segment_seconds, rng)
        pitched = [p for p in piece.parts if not p.instrument.is_drum]
        if not pitched:
            raise BuildError(f"{piece.piece_id}: unison needs a pitched part")
        part = pitched[int(rng.integers(len(pitched)))]
        cropped = sources.crop_instrument(part.instrument, start, end)
        stems = []
        for k, program in enumerate(config.unison_programs):
            transpose = config.unison_transpose if k == 1 else 0
            inst = sources.transpose_instrument(cropped, transpose) if transpose else cropped
            choice = instruments_lib.InstrumentChoice(int(program), False,
                                                      instruments_lib.inst_class(program, False))
            stems.append(_stem(inst, choice, piece.piece_id, part.name, transpose))
        return stems, end - start
    # random-mix: the first stem from this piece, the others from other pieces of the split.
    length = config.segment_seconds or piece.end_time
    others = [pid for pid in split_ids if pid != piece.piece_id]
    count = min(config.random_mix_stems, len(others) + 1)
    donors = [piece.piece_id] + [others[int(k)] for k in rng.choice(len(others), count - 1, replace=False)]
    picked = []
    for pid in donors:
        donor = pieces[pid]
        part = donor.parts[int(rng.integers(len(donor.parts)))]
        start, end = _window(donor, length, rng)
        inst = sources.crop_instrument(part.instrument, start, end)
        if end - start < length:
            inst = sources.loop_instrument(inst, end - start, length)
        picked.append((inst, part, pid))
    return _assign([(inst, part.name, pid) for inst, part, pid in picked], config, rng), length
