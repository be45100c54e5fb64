"""Training and evaluation data for the separators from any Slakh2100-layout folder.

Instrument sets: each target is an `mt3x.data.instrument_groups.InstrumentGroup` that matches
stems by GM program range, Slakh `inst_class`, stem name or the drum flag; a stem belongs to the
first group it matches, and every unmatched rendered stem goes to the residual "other".
`FOUR_STEMS` is the grouping used in papers (piano = programs 0-7, guitar 24-31, bass 32-39,
drums; the rest is "other"). `parse_instruments('piano=0-7;guitar=24-31;bass=32-39;drums')` reads
the one instrument group syntax shared with `mt3x-tag` (see `mt3x.data.instrument_groups`).

Training windows (`SeparationWindows`): an endless, seeded iterable of numpy batches
```
{'mixture': float32[batch, window_samples], 'sources': float32[batch, n_groups, window_samples]}
```
at `sample_rate`, the mixture being the sum of the (gained) target sources and the residual.
With `remix=True` each source of an example comes from an independently chosen track and offset
(on-the-fly remixing across songs); each source gets a random gain, uniform in `gain_range`;
mixtures whose peak exceeds 0.99 are scaled down together with their sources. Tracks are decoded
into a pool of `pool_size` tracks of which `refresh_per_batch` are swapped for new random ones
after every batch, so memory stays bounded on full-size Slakh2100 while small sets stay cached.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np

from mt3x.data.instrument_groups import InstrumentGroup, group_index, parse_groups
from mt3x.data.slakh import SlakhTrack, read_split
from mt3x.errors import Mt3xError

Batch = dict[str, np.ndarray]


FOUR_STEMS: tuple[InstrumentGroup, ...] = parse_groups("4stem")
RESIDUAL = "other"


def parse_instruments(spec: str) -> tuple[InstrumentGroup, ...]:
    """The separation targets of an instrument spec (`mt3x.data.instrument_groups` syntax).

    Raises Mt3xError naming the bad part of the spec, or a group named like the residual.
    """
    groups = parse_groups(spec)
    if any(g.name == RESIDUAL for g in groups):
        raise Mt3xError(f"instrument spec {spec!r}: no group may be called {RESIDUAL!r}, the "
                        "residual that every stem no group takes goes to")
    return groups


def assign_stems(track: SlakhTrack, groups: Sequence[InstrumentGroup]) -> list[list[str]]:
    """Rendered stem names per group, plus a last list for the residual 'other'."""
    out: list[list[str]] = [[] for _ in range(len(groups) + 1)]
    for stem in track.rendered_stems:
        index = group_index(stem, groups)
        out[len(groups) if index is None else index].append(stem.name)
    return out


def load_grouped(track: SlakhTrack, groups: Sequence[InstrumentGroup], sample_rate: int
                 ) -> np.ndarray:
    """Summed stems per group: float32[n_groups + 1, samples] at `sample_rate`; the last row is
    'other'. Stems of unequal length are zero-padded to the longest."""
    assignment = assign_stems(track, groups)
    audio = {name: track.load_stem(name, sample_rate=sample_rate)
             for names in assignment for name in names}
    length = max((a.size for a in audio.values()), default=0)
    if length == 0:
        length = track.load_mix(sample_rate=sample_rate).size
    out = np.zeros((len(assignment), length), np.float32)
    for row, names in enumerate(assignment):
        for name in names:
            out[row, :audio[name].size] += audio[name]
    return out


def evaluation_examples(tracks: Sequence[SlakhTrack], groups: Sequence[InstrumentGroup],
                        sample_rate: int, *, max_seconds: float | None = None
                        ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(track_id, mixture float32[samples], sources float32[n_groups, samples]) per track.

    The mixture is the sum of every rendered stem (targets + residual), so oracle rows and
    models see the same signal; `max_seconds` truncates long tracks."""
    for track in tracks:
        grouped = load_grouped(track, groups, sample_rate)
        if max_seconds is not None:
            grouped = grouped[:, :int(max_seconds * sample_rate)]
        yield track.track_id, grouped.sum(0), grouped[:-1]


class SeparationWindows:
    """Endless seeded iterable of training batches (see the module docstring).

    Args:
      tracks: the tracks to draw from (e.g. `read_split(root, 'train')`).
      groups: target instruments.
      sample_rate: Hz of the batches (stems are resampled on load).
      window_samples: samples per example.
      batch_size: examples per batch.
      seed: seeds every random choice.
      remix: draw each source from its own random track (across-song remixing).
      gain_range: (low, high) uniform per-source linear gain, or None for no gain augmentation.
      include_other: add the residual 'other' (unmatched stems) to the mixture.
      pool_size, refresh_per_batch: decoded-track pool and its turnover per batch.
      max_tries: redraws of a window whose targets are all silent.
    """

    def __init__(self, tracks: Sequence[SlakhTrack], groups: Sequence[InstrumentGroup], *,
                 sample_rate: int, window_samples: int, batch_size: int, seed: int,
                 remix: bool = True, gain_range: tuple[float, float] | None = (0.25, 1.25),
                 include_other: bool = True, pool_size: int = 16, refresh_per_batch: int = 1,
                 max_tries: int = 10):
        if not tracks:
            raise Mt3xError("SeparationWindows: no tracks given")
        if window_samples <= 0 or batch_size <= 0:
            raise Mt3xError("SeparationWindows: window_samples and batch_size must be positive")
        self.tracks = list(tracks)
        self.groups = tuple(groups)
        self.sample_rate = sample_rate
        self.window_samples = window_samples
        self.batch_size = batch_size
        self.seed = seed
        self.remix = remix
        self.gain_range = gain_range
        self.include_other = include_other
        self.pool_size = max(1, min(pool_size, len(self.tracks)))
        self.refresh_per_batch = refresh_per_batch if pool_size < len(self.tracks) else 0
        self.max_tries = max_tries

    def __iter__(self) -> Iterator[Batch]:
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(self.tracks))
        pool: dict[int, np.ndarray] = {int(i): self._load(int(i)) for i in order[:self.pool_size]}
        while True:
            yield self._batch(rng, pool)
            for _ in range(self.refresh_per_batch):
                out = int(rng.choice(list(pool)))
                candidates = [i for i in range(len(self.tracks)) if i not in pool]
                del pool[out]
                new = int(rng.choice(candidates))
                pool[new] = self._load(new)

    def _load(self, index: int) -> np.ndarray:
        return load_grouped(self.tracks[index], self.groups, self.sample_rate)

    def _window(self, rng: np.random.Generator, audio: np.ndarray, row: int | slice) -> np.ndarray:
        n = audio.shape[-1]
        start = int(rng.integers(0, max(n - self.window_samples, 0) + 1))
        piece = audio[row, start:start + self.window_samples]
        pad = self.window_samples - piece.shape[-1]
        if pad:
            piece = np.pad(piece, [(0, 0)] * (piece.ndim - 1) + [(0, pad)])
        return piece

    def _example(self, rng: np.random.Generator, pool: dict[int, np.ndarray]) -> np.ndarray:
        """float32[n_groups + 1, window]: targets then residual."""
        keys = list(pool)
        n_rows = len(self.groups) + 1
        for _ in range(self.max_tries):
            if self.remix:
                rows = []
                for row in range(n_rows):
                    active = [k for k in keys if np.any(pool[k][row])]
                    source = int(rng.choice(active if active else keys))
                    rows.append(self._window(rng, pool[source], row))
                example = np.stack(rows)
            else:
                example = self._window(rng, pool[int(rng.choice(keys))], slice(None))
            if np.any(example[:-1]):
                break
        if self.gain_range is not None:
            example = example * rng.uniform(*self.gain_range, size=(n_rows, 1))
        if not self.include_other:
            example[-1] = 0.0
        return example.astype(np.float32)

    def _batch(self, rng: np.random.Generator, pool: dict[int, np.ndarray]) -> Batch:
        examples = np.stack([self._example(rng, pool) for _ in range(self.batch_size)])
        mixture = examples.sum(1)
        peak = np.max(np.abs(mixture), axis=-1, keepdims=True)
        scale = np.where(peak > 0.99, 0.99 / np.maximum(peak, 1e-12), 1.0).astype(np.float32)
        return {"mixture": (mixture * scale).astype(np.float32),
                "sources": (examples[:, :-1] * scale[:, :, None]).astype(np.float32)}


def windows_from_folder(root: str | os.PathLike, split: str, groups: Sequence[InstrumentGroup],
                        **kwargs) -> SeparationWindows:
    """`SeparationWindows` over root/split (Slakh2100 layout); kwargs as the class."""
    return SeparationWindows(read_split(root, split), groups, **kwargs)
