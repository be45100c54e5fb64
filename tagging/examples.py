"""Tagging examples: a mixture cut into 1-second snippets, each labelled per instrument.

Snippets. A track's mixture (mono, resampled to `FeatureConfig.sample_rate`) is cut into
consecutive, non-overlapping snippets of `snippet_seconds` (1 s by default). Snippet i covers
[i * T, (i + 1) * T) seconds. A final partial snippet is zero-padded; when building training
examples it is kept only if it is at least half a snippet long (`partial='half'`), while tagging
keeps every partial snippet (`partial='pad'`: one row per started second).

Instruments. An instrument is a group of stems chosen by an `InstrumentGrouping`: by default the
stem's Slakh `inst_class` (Piano, Bass, Drums, ...); or instrument groups in the syntax shared with
`mt3x-separate` (`mt3x.data.instrument_groups`), e.g. the 4-stem grouping used in separation papers,
`piano=0-7;guitar=24-31;bass=32-39;drums;other=*` (`drums` takes the drum stems, `*` every stem no
other group takes; stems that no group takes are ignored). Here the preset `4stem` includes
`other=*`. Stems whose audio was not rendered are ignored: they are not in the mixture.

Labels. Both rules are computed for every snippet; `LabelConfig.source` picks which one trains:

- energy: a stem plays in snippet i when its mean-square energy over the snippet, in dB, is at
  least `threshold_db` (default -40 dB) relative to the same stem's loudest snippet in the track,
  and above the absolute floor `min_dbfs` (default -70 dB re full scale), so a silent stem never
  plays. An instrument plays when any of its stems plays.
- midi: a stem plays in snippet i when its notes sound for at least `min_note_ms` (default 50 ms)
  in total inside the snippet (the union of the notes' intervals clipped to the snippet; drum notes,
  whose MIDI durations are nominal, count as lasting at least `drum_note_ms`, default 100 ms).
  An instrument plays when any of its stems plays.

The energy rule hears release tails and reverberation that MIDI does not hold; the MIDI rule hears
notes that are rendered too quietly to matter. `tests/tagging` measures how often they agree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from mt3x.data.instrument_groups import (GroupSpecError, InstrumentGroup, group_index,
                                         groups_from_json, groups_to_json, parse_groups)
from mt3x.errors import Mt3xError
from tagging.features import FeatureConfig, compute_features, feature_names

__all__ = [
    "FOUR_STEM_GROUPING",
    "GroupingError",
    "InstrumentGrouping",
    "LabelConfig",
    "SnippetExamples",
    "build_examples",
    "cut_snippets",
    "energy_activity",
    "midi_activity",
    "num_snippets",
    "snippet_energy_db",
    "track_examples",
]

LABEL_SOURCES = ("energy", "midi", "both", "either")


class GroupingError(Mt3xError):
    """An instrument grouping spec cannot be parsed."""


@dataclasses.dataclass(frozen=True)
class InstrumentGrouping:
    """Maps a stem to an instrument name, or None to ignore it.

    kind='inst_class': the stem's Slakh inst_class (drum stems keep theirs, normally 'Drums').
    kind='groups': the first of `groups` (`mt3x.data.instrument_groups`) that takes the stem.
    """

    kind: str = "inst_class"
    groups: tuple[InstrumentGroup, ...] = ()

    def group_of(self, program: int, is_drum: bool, inst_class: str,
                 stem_name: str = "") -> str | None:
        if self.kind == "inst_class":
            return inst_class or None
        index = group_index(StemKey(stem_name, program, is_drum, inst_class), self.groups)
        return None if index is None else self.groups[index].name

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "groups": groups_to_json(self.groups)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "InstrumentGrouping":
        """Reads `to_json`'s dict, and the older {'kind': 'programs', 'ranges', 'drums',
        'other'} of taggers trained before the shared group syntax."""
        try:
            if data["kind"] == "programs":
                groups = [InstrumentGroup(str(n), tuple(range(int(a), int(b) + 1)))
                          for n, a, b in data["ranges"]]
                if data.get("drums"):
                    groups.append(InstrumentGroup(str(data["drums"]), drums=True))
                if data.get("other"):
                    groups.append(InstrumentGroup(str(data["other"]), rest=True))
                return cls("groups", tuple(groups))
            if data["kind"] not in ("inst_class", "groups"):
                raise ValueError(f"unknown kind {data['kind']!r}")
            return cls(kind=data["kind"], groups=groups_from_json(data.get("groups", ())) or ())
        except (KeyError, TypeError, ValueError) as err:
            raise GroupingError(f"instrument grouping: malformed JSON {data!r} ({err})") from err

    @classmethod
    def parse(cls, spec: str) -> "InstrumentGrouping":
        """'inst_class', or an instrument group spec (`mt3x.data.instrument_groups`); the preset
        '4stem' here adds `other=*`, so the stems outside the four are tagged as 'other'."""
        spec = spec.strip()
        if spec == "inst_class":
            return cls()
        if spec in ("4stem", "four_stem"):
            return FOUR_STEM_GROUPING
        try:
            return cls("groups", parse_groups(spec))
        except GroupSpecError as err:
            raise GroupingError(f"{err}; or 'inst_class'") from None


@dataclasses.dataclass(frozen=True)
class StemKey:
    """The fields of a stem that an instrument group looks at."""

    name: str
    program: int
    is_drum: bool
    inst_class: str


FOUR_STEM_GROUPING = InstrumentGrouping(
    "groups", parse_groups("4stem") + (InstrumentGroup("other", rest=True),))


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    """The labelling rules (see the module docstring)."""

    threshold_db: float = -40.0
    min_dbfs: float = -70.0
    min_note_ms: float = 50.0
    drum_note_ms: float = 100.0
    source: str = "energy"

    def __post_init__(self):
        if self.source not in LABEL_SOURCES:
            raise Mt3xError(f"label source: expected one of {LABEL_SOURCES}, got {self.source!r}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LabelConfig":
        return cls(**data)


def num_snippets(num_samples: int, sample_rate: int, snippet_seconds: float = 1.0,
                 partial: str = "pad") -> int:
    """How many snippets `num_samples` give: 'pad' counts every started snippet, 'half' only a
    final partial one at least half long, 'drop' only whole ones."""
    length = int(round(sample_rate * snippet_seconds))
    whole, rest = divmod(num_samples, length)
    if partial == "pad":
        return whole + (rest > 0)
    if partial == "half":
        return whole + (2 * rest >= length)
    if partial == "drop":
        return whole
    raise ValueError(f"partial must be 'pad', 'half' or 'drop', got {partial!r}")


def cut_snippets(audio: np.ndarray, sample_rate: int, snippet_seconds: float = 1.0,
                 count: int | None = None, partial: str = "pad") -> np.ndarray:
    """Cuts `audio` f32[samples] into f32[count, snippet samples], zero-padding the end.

    `count` defaults to `num_snippets(len(audio), sample_rate, snippet_seconds, partial)`.
    """
    audio = np.asarray(audio, np.float32)
    length = int(round(sample_rate * snippet_seconds))
    if count is None:
        count = num_snippets(audio.shape[-1], sample_rate, snippet_seconds, partial)
    out = np.zeros((count, length), np.float32)
    flat = audio[:count * length]
    full, rest = divmod(flat.size, length)
    out[:full] = flat[:full * length].reshape(full, length)
    if rest and full < count:
        out[full, :rest] = flat[full * length:]
    return out


def snippet_energy_db(audio: np.ndarray, sample_rate: int, count: int,
                      snippet_seconds: float = 1.0) -> np.ndarray:
    """f64[count]: mean-square energy of each snippet of `audio` (zero-padded), dB re full scale.

    Floored at -200 dB (digital silence)."""
    snippets = cut_snippets(audio, sample_rate, snippet_seconds, count=count).astype(np.float64)
    power = np.mean(snippets ** 2, axis=1) if snippets.size else np.zeros(count)
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def energy_activity(audio: np.ndarray, sample_rate: int, count: int, *,
                    snippet_seconds: float = 1.0, threshold_db: float = -40.0,
                    min_dbfs: float = -70.0) -> np.ndarray:
    """bool[count]: snippets where one stem `audio` f32[samples] plays, by the energy rule."""
    energy = snippet_energy_db(audio, sample_rate, count, snippet_seconds)
    if count == 0:
        return np.zeros(0, bool)
    return (energy >= energy.max() + threshold_db) & (energy > min_dbfs)


def midi_activity(notes: Iterable[tuple[float, float, bool]], count: int, *,
                  snippet_seconds: float = 1.0, min_note_ms: float = 50.0,
                  drum_note_ms: float = 100.0) -> np.ndarray:
    """bool[count]: snippets where notes sound for >= min_note_ms in total (union of intervals).

    Args:
      notes: (start s, end s, is_drum) per note.
      count: number of snippets of `snippet_seconds`.
    """
    intervals = []
    for start, end, is_drum in notes:
        if is_drum:
            end = max(end, start + drum_note_ms / 1000.0)
        if end > start:
            intervals.append((start, end))
    sounding = np.zeros(count, np.float64)
    if not intervals:
        return sounding > 0
    intervals.sort()
    merged = [list(intervals[0])]
    for start, end in intervals[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in merged:
        first = max(int(math.floor(start / snippet_seconds)), 0)
        last = min(int(math.ceil(end / snippet_seconds)), count)
        for i in range(first, last):
            lo, hi = i * snippet_seconds, (i + 1) * snippet_seconds
            sounding[i] += max(0.0, min(end, hi) - max(start, lo))
    return sounding >= min_note_ms / 1000.0 - 1e-9


@dataclasses.dataclass
class SnippetExamples:
    """Snippet features and both kinds of labels, for many tracks.

    Attributes:
      features: f32[n, num_features].
      energy_labels, midi_labels: bool[n, len(instruments)].
      track_ids: str[n], the snippet's track.
      snippet_index: i32[n], the snippet's position in its track (snippet i starts at i seconds
        with 1-second snippets).
      instruments: names of the label columns.
      feature_names: names of the feature columns.
      present: bool[n, len(instruments)]: the track has a rendered stem of that instrument.
    """

    features: np.ndarray
    energy_labels: np.ndarray
    midi_labels: np.ndarray
    track_ids: np.ndarray
    snippet_index: np.ndarray
    instruments: list[str]
    feature_names: list[str]
    present: np.ndarray

    def labels(self, source: str = "energy") -> np.ndarray:
        """bool[n, instruments] from the energy rule, the MIDI rule, 'both' (and) or 'either'."""
        if source == "energy":
            return self.energy_labels
        if source == "midi":
            return self.midi_labels
        if source == "both":
            return self.energy_labels & self.midi_labels
        if source == "either":
            return self.energy_labels | self.midi_labels
        raise Mt3xError(f"label source: expected one of {LABEL_SOURCES}, got {source!r}")

    def __len__(self) -> int:
        return self.features.shape[0]

    @classmethod
    def concatenate(cls, parts: Sequence["SnippetExamples"], instruments: list[str],
                    names: list[str]) -> "SnippetExamples":
        if not parts:
            empty = np.zeros((0, len(instruments)), bool)
            return cls(np.zeros((0, len(names)), np.float32), empty, empty.copy(),
                       np.zeros(0, str), np.zeros(0, np.int32), instruments, names, empty.copy())
        return cls(np.concatenate([p.features for p in parts]),
                   np.concatenate([p.energy_labels for p in parts]),
                   np.concatenate([p.midi_labels for p in parts]),
                   np.concatenate([p.track_ids for p in parts]),
                   np.concatenate([p.snippet_index for p in parts]),
                   instruments, names, np.concatenate([p.present for p in parts]))


# Snippets buffered by `build_examples` before one batched feature computation (64 MB at 16 kHz).
FEATURE_CHUNK_SNIPPETS = 1024


def labelled_snippets(track: Any, columns: Sequence[str], grouping: InstrumentGrouping,
                      label_config: LabelConfig, feature_config: FeatureConfig,
                      partial: str) -> tuple[np.ndarray, SnippetExamples, list[str]]:
    """(mix snippets f32[count, snippet samples], the track's examples with features still empty
    f32[count, 0], groups found in the track). See `track_examples`."""
    rate = feature_config.sample_rate
    seconds = feature_config.snippet_seconds
    mix = np.asarray(track.load_mix(sample_rate=rate), np.float32)
    count = num_snippets(mix.shape[-1], rate, seconds, partial)
    stems = [s for s in track.stems if getattr(s, "audio_rendered", True)]
    stem_groups = [(s, grouping.group_of(s.program, s.is_drum, s.inst_class, s.name))
                   for s in stems]
    stem_groups = [(s, g) for s, g in stem_groups if g is not None]
    found = sorted({g for _, g in stem_groups})
    index = {name: i for i, name in enumerate(columns)}
    energy = np.zeros((count, len(columns)), bool)
    midi = np.zeros((count, len(columns)), bool)
    present = np.zeros((count, len(columns)), bool)
    for stem, group in stem_groups:
        if group not in index:
            continue
        col = index[group]
        present[:, col] = True
        audio = np.asarray(track.load_stem(stem.name, sample_rate=rate), np.float32)
        energy[:, col] |= energy_activity(audio, rate, count, snippet_seconds=seconds,
                                          threshold_db=label_config.threshold_db,
                                          min_dbfs=label_config.min_dbfs)
        sequence = track.stem_note_sequence(stem.name)
        notes = [(n.start_time, n.end_time, bool(n.is_drum or stem.is_drum))
                 for n in sequence.notes]
        midi[:, col] |= midi_activity(notes, count, snippet_seconds=seconds,
                                      min_note_ms=label_config.min_note_ms,
                                      drum_note_ms=label_config.drum_note_ms)
    examples = SnippetExamples(
        features=np.zeros((count, 0), np.float32), energy_labels=energy, midi_labels=midi,
        track_ids=np.full(count, str(track.track_id)),
        snippet_index=np.arange(count, dtype=np.int32),
        instruments=list(columns), feature_names=feature_names(feature_config), present=present)
    return cut_snippets(mix, rate, seconds, count=count), examples, found


def _fill_features(waiting: list[tuple[SnippetExamples, np.ndarray]],
                   feature_config: FeatureConfig) -> None:
    """Sets the features of every waiting (examples, snippets) pair with one batched computation,
    so short tracks share jitted batches; empties `waiting`."""
    if not waiting:
        return
    features = compute_features(np.concatenate([s for _, s in waiting]), feature_config)
    ends = np.cumsum([s.shape[0] for _, s in waiting])
    for (part, snippets), end in zip(waiting, ends):
        part.features = features[end - snippets.shape[0]:end]
    waiting.clear()


def track_examples(track: Any, *, instruments: Sequence[str] | None = None,
                   grouping: InstrumentGrouping = InstrumentGrouping(),
                   label_config: LabelConfig = LabelConfig(),
                   feature_config: FeatureConfig = FeatureConfig(),
                   partial: str = "half") -> tuple[SnippetExamples, list[str]]:
    """Examples of one `mt3x.data.slakh.SlakhTrack`.

    Args:
      track: a SlakhTrack (mix, stems with program / is_drum / inst_class / audio_rendered,
        per-stem NoteSequences).
      instruments: label columns; None uses the track's own groups (sorted).
      grouping, label_config, feature_config: see their docs.
      partial: how a final partial second counts (`num_snippets`).

    Returns:
      (examples, groups found in the track).
    """
    if instruments is None:
        instruments = track_groups([track], grouping)
    snippets, examples, found = labelled_snippets(track, list(instruments), grouping,
                                                  label_config, feature_config, partial)
    _fill_features([(examples, snippets)], feature_config)
    return examples, found


def track_groups(tracks: Iterable[Any], grouping: InstrumentGrouping) -> list[str]:
    """Sorted instrument groups of the rendered stems of `tracks`."""
    groups = set()
    for track in tracks:
        for stem in track.stems:
            if getattr(stem, "audio_rendered", True):
                group = grouping.group_of(stem.program, stem.is_drum, stem.inst_class,
                                           stem.name)
                if group is not None:
                    groups.add(group)
    return sorted(groups)


def build_examples(tracks: Sequence[Any], *, instruments: Sequence[str] | None = None,
                   grouping: InstrumentGrouping = InstrumentGrouping(),
                   label_config: LabelConfig = LabelConfig(),
                   feature_config: FeatureConfig = FeatureConfig(),
                   partial: str = "half", progress: bool = False) -> SnippetExamples:
    """Examples of many tracks; `instruments` None = every group found in them (sorted).

    Features are computed for up to `FEATURE_CHUNK_SNIPPETS` snippets of consecutive tracks at a
    time, so many short tracks do not each pad a batch of their own."""
    instruments = track_groups(tracks, grouping) if instruments is None else list(instruments)
    iterator: Iterable[Any] = tracks
    if progress:
        iterator = tqdm(tracks, desc="snippets", unit="track")
    parts: list[SnippetExamples] = []
    waiting: list[tuple[SnippetExamples, np.ndarray]] = []
    for track in iterator:
        snippets, part, _ = labelled_snippets(track, instruments, grouping, label_config,
                                              feature_config, partial)
        parts.append(part)
        waiting.append((part, snippets))
        if sum(s.shape[0] for _, s in waiting) >= FEATURE_CHUNK_SNIPPETS:
            _fill_features(waiting, feature_config)
    _fill_features(waiting, feature_config)
    return SnippetExamples.concatenate(parts, instruments, feature_names(feature_config))
