"""Builds the offline piece cache of a Slakh2100-layout folder (`mt3x-data cache`): in parallel,
atomically, resumably. The format and the manifest are `mt3x.tasks.cache`'s.

    >>> manifest = build_cache('data/demo', 'data/demo_cache', splits=('train', 'validation'),
    ...                        jobs=2)
    >>> manifest['splits']['train']['pieces']

Each split's tracks (sorted by id) are dealt round-robin into shards; a worker process tokenises
the tracks of one shard exactly as the seqio training chain does (`SlakhTrack.load_mix` at
16 kHz, `track_note_sequence`, `examples.tokenize_track(is_training=True)`,
`examples.split_frames`) and writes the shard under a temporary name, then renames it; a
sidecar JSON with the shard's fingerprint is written last. Rerunning skips every shard whose
file and sidecar exist with the same fingerprint (same tracks, files and settings), so an
interrupted build resumes. The manifest is written when all shards are done.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.data.slakh import PROGRAM_SOURCES, SlakhTrack, list_track_dirs, read_track, \
    track_note_sequence
from mt3x.errors import Mt3xError
from mt3x.tasks import examples
from mt3x.tasks.cache import (AUDIO_DTYPES, CACHE_FORMAT, CACHE_VERSION, CacheError,
                              cache_task_name, codec_description, encode_piece, fingerprint,
                              load_manifest, manifest_path, shard_name, write_manifest,
                              write_shard)
from mt3x.util.files import atomic_path
from mt3x.util.parallel import parallel_map

log = logging.getLogger(__name__)

DEFAULT_TRACKS_PER_SHARD = 32


@dataclasses.dataclass(frozen=True)
class CacheSettings:
    """What a cache is built with (all of it goes into the shard fingerprints).

    vocab: codec preset ('mt3', 'ismir2021'). dataset_name: task-name prefix ('slakh').
    program_source: 'slakh_class' or 'midi'. audio_dtype: 'int16' (default), 'float16',
    'float32'. max_frames: frames per piece (MT3: 2000).
    """

    vocab: str = "mt3"
    dataset_name: str = "slakh"
    program_source: str = "slakh_class"
    audio_dtype: str = "int16"
    max_frames: int = examples.MAX_NUM_CACHED_FRAMES

    def __post_init__(self) -> None:
        if self.vocab not in codec_vocabulary.PRESETS:
            raise CacheError(f"vocab {self.vocab!r}; expected one of "
                             f"{sorted(codec_vocabulary.PRESETS)}")
        if self.program_source not in PROGRAM_SOURCES:
            raise CacheError(f"program_source {self.program_source!r}; expected one of "
                             f"{PROGRAM_SOURCES}")
        if self.audio_dtype not in AUDIO_DTYPES:
            raise CacheError(f"audio_dtype {self.audio_dtype!r}; expected one of {AUDIO_DTYPES}")
        if self.max_frames < 1:
            raise CacheError(f"max_frames must be >= 1, got {self.max_frames}")


def track_fingerprint(track_dir: Path) -> str:
    """Content hash of a track folder: metadata.yaml's bytes, and name and size of every other
    file (mix, stems, MIDI), so edited or re-rendered tracks are noticed without reading audio."""
    files = sorted(p for p in track_dir.rglob("*") if p.is_file())
    meta = track_dir / "metadata.yaml"
    return fingerprint([track_dir.name, meta.read_bytes() if meta.is_file() else b"",
                        [(str(p.relative_to(track_dir)), p.stat().st_size) for p in files]])


def dataset_fingerprint(root: str | Path, split: str) -> str:
    """Content hash of root/split's tracks (`track_fingerprint` of each, in id order)."""
    return fingerprint(track_fingerprint(d) for d in list_track_dirs(root, split))


@dataclasses.dataclass(frozen=True)
class _ShardJob:
    root: str
    split: str
    index: int
    count: int
    track_dirs: tuple[str, ...]
    settings: CacheSettings
    fingerprint: str
    out: str


def _track_pieces(track: SlakhTrack, settings: CacheSettings) -> list[dict[str, Any]]:
    """The cached pieces of one track (the seqio chain up to its CacheDatasetPlaceholder)."""
    config = codec_vocabulary.get_config(settings.vocab)
    audio = track.load_mix(sample_rate=MT3_SPECTROGRAM_CONFIG.sample_rate)
    sequence = track_note_sequence(track, program_source=settings.program_source)
    tokenized = examples.tokenize_track(audio, sequence, config, is_training=True)
    return examples.split_frames(tokenized, settings.max_frames)


def _build_shard(job: _ShardJob) -> dict[str, Any]:
    """Worker: tokenises the shard's tracks and writes its ArrayRecord file and sidecar.
    Returns the sidecar dict (tracks, pieces, failed tracks, fingerprint)."""
    failed: list[str] = []
    tracks: list[str] = []
    counts = {"pieces": 0, "frames": 0}

    def records() -> Iterator[bytes]:
        for track_dir in job.track_dirs:
            name = Path(track_dir).name
            try:
                pieces = _track_pieces(read_track(track_dir), job.settings)
            except Mt3xError as err:  # a bad track is skipped and listed, as the seqio chain
                log.warning("skipping track %s: %s", track_dir, err)
                failed.append(f"{name}: {err}")
                continue
            tracks.append(name)
            for i, piece in enumerate(pieces):
                counts["pieces"] += 1
                counts["frames"] += len(piece["inputs"])
                yield encode_piece(piece, audio_dtype=job.settings.audio_dtype, track_id=name,
                                   piece_index=i)

    path = Path(job.out) / job.split / shard_name(job.index, job.count)
    write_shard(path, records())
    sidecar = {"path": f"{job.split}/{path.name}", "fingerprint": job.fingerprint,
               "tracks": tracks, "tracks_failed": failed, **counts}
    with atomic_path(Path(f"{path}.json")) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=1) + "\n")
    return sidecar


def _complete_shard(job: _ShardJob) -> dict[str, Any] | None:
    """The sidecar of a shard a previous build finished with the same fingerprint, else None."""
    path = Path(job.out) / job.split / shard_name(job.index, job.count)
    sidecar = Path(f"{path}.json")
    if not (path.is_file() and sidecar.is_file()):
        return None
    try:
        done = json.loads(sidecar.read_text())
    except ValueError:
        return None
    return done if done.get("fingerprint") == job.fingerprint else None


def _plan(root: Path, out: Path, split: str, settings: CacheSettings,
          num_shards: int | None) -> tuple[list[_ShardJob], str]:
    """The shard jobs of one split and the split's dataset fingerprint."""
    dirs = list_track_dirs(root, split)
    if not dirs:
        raise CacheError(f"{root / split}: no Track* folders to cache")
    count = num_shards or -(-len(dirs) // DEFAULT_TRACKS_PER_SHARD)
    count = max(1, min(count, len(dirs)))
    track_prints = {d: track_fingerprint(d) for d in dirs}
    jobs = []
    for index in range(count):
        chosen = dirs[index::count]
        print_ = fingerprint([CACHE_VERSION, dataclasses.asdict(settings), split, index, count,
                              [track_prints[d] for d in chosen]])
        jobs.append(_ShardJob(str(root), split, index, count, tuple(str(d) for d in chosen),
                              settings, print_, str(out)))
    return jobs, fingerprint(track_prints[d] for d in dirs)


def _run(jobs: list[_ShardJob], workers: int, progress: bool) -> Iterator[dict[str, Any]]:
    return parallel_map(_build_shard, jobs, workers, desc="cache shards", progress=progress,
                        unit="shard")


def build_cache(root: str | os.PathLike, out: str | os.PathLike, *,
                splits: Sequence[str] = ("train",), settings: CacheSettings = CacheSettings(),
                num_shards: int | None = None, jobs: int = 1, overwrite: bool = False,
                progress: bool = True) -> dict[str, Any]:
    """Caches the tokenised pieces of `splits` of a Slakh-layout folder; returns the manifest.

    Args:
      root: the dataset folder. out: the cache folder (created).
      splits: folder splits to cache ('train', 'validation', ...).
      settings: vocabulary, task-name prefix, program source, audio dtype, piece length.
      num_shards: shards per split (default: one per 32 tracks, at most one per track).
      jobs: worker processes.
      overwrite: replace a complete cache built with other settings (else CacheError).
      progress: draw a progress bar.
    Returns:
      the manifest (also written to `<out>/manifest.json`).
    Raises:
      CacheError: no tracks in a split, a cache of other settings at `out`, no piece at all.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise CacheError(f"{root}: dataset folder does not exist")
    task = cache_task_name(settings.dataset_name, settings.vocab)
    if manifest_path(out).is_file() and not overwrite:
        old = load_manifest(out)
        if old.get("task") != task or old.get("settings") != dataclasses.asdict(settings):
            raise CacheError(f"{out}: holds a cache of task {old.get('task')!r} with settings "
                             f"{old.get('settings')}; pass --overwrite to replace it")
    planned = {split: _plan(root, out, split, settings, num_shards) for split in splits}
    manifest_path(out).unlink(missing_ok=True)  # incomplete from here until rewritten
    todo, done = [], {}
    for split, (shard_jobs, _) in planned.items():
        _remove_stale_shards(out / split, {shard_name(j.index, j.count) for j in shard_jobs})
        for job in shard_jobs:
            finished = _complete_shard(job)
            if finished is None:
                todo.append(job)
            else:
                done[(split, job.index)] = finished
    log.info("cache %s: %d shards to build, %d kept", out, len(todo), len(done))
    for sidecar in _run(todo, jobs, progress):
        split, name = sidecar["path"].rsplit("/", 1)
        done[(split, int(name.split("-")[1]))] = sidecar
    total = sum(len(shard_jobs) for shard_jobs, _ in planned.values())
    manifest = {
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "task": task,
        "codec": codec_description(settings.vocab), "program_source": settings.program_source,
        "settings": dataclasses.asdict(settings), "dataset_root": str(root.absolute()),
        "sample_rate": MT3_SPECTROGRAM_CONFIG.sample_rate,
        "hop_width": MT3_SPECTROGRAM_CONFIG.hop_width, "splits": {},
        "shards_built": len(todo), "shards_kept": total - len(todo)}
    for split, (shard_jobs, split_print) in planned.items():
        shards = [done[(split, j.index)] for j in shard_jobs]
        entry = {"dataset_fingerprint": split_print,
                 "shards": [{k: s[k] for k in ("path", "pieces", "frames", "fingerprint")}
                            for s in shards]}
        for key in ("pieces", "frames"):
            entry[key] = sum(s[key] for s in shards)
        entry["tracks"] = sum(len(s["tracks"]) for s in shards)
        entry["tracks_failed"] = [t for s in shards for t in s["tracks_failed"]]
        if not entry["pieces"]:
            raise CacheError(f"{root / split}: no track could be tokenised "
                             f"({entry['tracks_failed'][:3]})")
        manifest["splits"][split] = entry
    write_manifest(out, manifest)
    return manifest


def _remove_stale_shards(folder: Path, keep: set[str]) -> None:
    """Deletes shard files of another shard count (a rebuild with other --shards)."""
    if not folder.is_dir():
        return
    for path in folder.glob("pieces-*.array_record*"):
        if path.name.removesuffix(".json") not in keep:
            path.unlink()
