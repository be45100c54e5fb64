"""The Grain input pipeline over the piece cache: the seqio driver's batch format and example
distribution on the same tracks, seeded, sharded per host, resumable at the same example from
its saved state, refusing a cache of another task, and free of TensorFlow and seqio."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.tasks.test_tasks import toy_track
from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.tasks import grain_pipeline as gp
from mt3x.tasks import registry as tasks
from mt3x.tasks.cache import CacheError
from mt3x.tasks.synthetic_cache import write_synthetic_cache, write_tracks_cache

REPO = Path(__file__).resolve().parents[2]
CODEC = codec_vocabulary.get_config("mt3").codec
TIE = CODEC.encode("tie", 0) + 3  # model id


@pytest.fixture(scope="module")
def toy_tracks():
    return [toy_track(i, seconds=12.0, notes=80, drums=20) for i in range(3)]


@pytest.fixture(scope="module")
def toy_cache(toy_tracks, tmp_path_factory):
    rows = [(t["track_id"], t["audio"], t["sequence"]) for t in toy_tracks]
    return write_tracks_cache(tmp_path_factory.mktemp("grain") / "cache",
                              {"train": rows, "validation": rows[:1]}, dataset_name="toygrain")


def _config(cache, **changes) -> gp.GrainPipelineConfig:
    return dataclasses.replace(gp.GrainPipelineConfig(cache_dir=cache, dataset_name="toygrain",
                                                      batch_size=4), **changes)


def _take(iterator, n: int) -> list[dict]:
    return [next(iterator) for _ in range(n)]


def token_statistics(batches: list[dict]) -> dict[str, float]:
    """Mean target length, share of each event type among the tokens, mean tie-section length,
    mean and full share of the encoder lengths."""
    targets = np.concatenate([b["decoder_target_tokens"] for b in batches])
    lengths = np.concatenate([b["encoder_input_lengths"] for b in batches])
    ids = targets[targets > 1] - 3
    stats = {"length": float((targets != 0).sum(1).mean()),
             "tie_section": float(np.mean([np.argmax(row == TIE) for row in targets])),
             "frames": float(lengths.mean()), "full": float((lengths == 256).mean())}
    for event in CODEC.event_ranges:
        low, high = CODEC.event_type_range(event.type)
        stats[event.type] = float(((ids >= low) & (ids <= high)).mean())
    return stats


@pytest.mark.parametrize("mix", [None, 3])
def test_grain_and_seqio_give_the_same_batches_and_distribution(toy_tracks, toy_cache, mix):
    names = tasks.register_in_memory_tasks(
        {"train": toy_tracks, "validation": toy_tracks[:1], "test": toy_tracks[:1]},
        f"toygrainseqio{mix or 0}", "mt3", in_memory_cache=True, max_examples_per_mix=mix,
        shuffle_buffer_size=64)
    seqio_batches = _take(tasks.make_train_batches(
        names["train"], batch_size=32, seed=0,
        feature_lengths={"inputs": 256, "targets": 1024}), 10)
    grain_batches = _take(iter(gp.batch_dataset(
        _config(toy_cache, batch_size=32, max_examples_per_mix=mix), seed=0)), 10)
    first_seqio, first_grain = seqio_batches[0], grain_batches[0]
    assert set(first_seqio) == set(first_grain)
    for key, value in first_seqio.items():
        assert first_grain[key].shape == value.shape and first_grain[key].dtype == value.dtype, key
    for batch in grain_batches:   # the feature converter's invariants
        np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 1:],
                                      batch["decoder_target_tokens"][:, :-1])
        assert (batch["decoder_input_tokens"][:, 0] == 0).all()
        np.testing.assert_array_equal(batch["decoder_loss_weights"],
                                      batch["decoder_target_tokens"] != 0)
        assert ((batch["decoder_target_tokens"] == 1).sum(1) == 1).all()  # one EOS each
    seqio_stats, grain_stats = token_statistics(seqio_batches), token_statistics(grain_batches)
    for name in ("length", "frames", "tie_section"):
        assert grain_stats[name] == pytest.approx(seqio_stats[name], rel=0.12), name
    for name in ("shift", "pitch", "velocity", "tie", "program", "drum"):
        assert grain_stats[name] == pytest.approx(seqio_stats[name], abs=0.03), name
    # 320 examples per path: the share of full 256-frame chunks has a standard error ~0.026.
    assert grain_stats["full"] == pytest.approx(seqio_stats["full"], abs=0.1)
    assert seqio_stats["tie_section"] > 1  # the statistics see the ties


def test_mixing_changes_the_distribution_the_test_compares(toy_cache):
    """The tolerances above separate mixed from unmixed examples."""
    plain = token_statistics(_take(iter(gp.batch_dataset(_config(toy_cache, batch_size=32), 0)),
                                   6))
    mixed = token_statistics(_take(iter(gp.batch_dataset(
        _config(toy_cache, batch_size=32, max_examples_per_mix=3), 0)), 6))
    assert mixed["length"] > 1.3 * plain["length"]


def test_seeded_and_sharded_per_host(toy_cache):
    def examples_of(config, seed, n):
        rows = []
        for batch in _take(iter(gp.batch_dataset(config, seed)), n):
            rows += [tuple(t) for t in batch["decoder_target_tokens"]]
        return rows

    one = _config(toy_cache, batch_size=1)
    everything = examples_of(one, 0, 12)
    assert everything == examples_of(one, 0, 12)
    assert everything != examples_of(one, 1, 12)
    host0 = examples_of(dataclasses.replace(one, shard_index=0, num_shards=2), 0, 6)
    host1 = examples_of(dataclasses.replace(one, shard_index=1, num_shards=2), 0, 6)
    assert host0 == everything[0::2] and host1 == everything[1::2]


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_resumed_source_continues_at_the_same_example(toy_cache, workers):
    config = _config(toy_cache, worker_count=workers, max_examples_per_mix=2)
    source = gp.GrainBatchSource(config, seed=5)
    iterator = iter(source)
    _take(iterator, 3)
    state = json.loads(json.dumps(source.get_state()))  # as the checkpoint stores it
    expected = _take(iterator, 2)
    resumed = gp.GrainBatchSource(config, seed=0)
    resumed.set_state(state)
    got = _take(iter(resumed), 2)
    for want, have in zip(expected, got):
        for key in want:
            np.testing.assert_array_equal(have[key], want[key])
    with pytest.raises(gp.GrainPipelineError, match="not written by the Grain pipeline"):
        resumed.set_state({"kind": "replay", "seed": 0, "consumed": 3})
    with pytest.raises(gp.GrainPipelineError, match="host shard"):
        gp.GrainBatchSource(dataclasses.replace(config, num_shards=2)).set_state(state)


def test_a_cache_of_another_task_is_refused(toy_cache, tmp_path):
    with pytest.raises(CacheError, match="manifest task"):
        gp.batch_dataset(_config(toy_cache, dataset_name="slakh"), 0)
    with pytest.raises(CacheError, match="manifest task is 'toygrain_notes_ties_vb1' but the "
                                         "run needs 'toygrain_notes'"):
        gp.batch_dataset(_config(toy_cache, vocab="ismir2021"), 0)
    with pytest.raises(CacheError, match="no cache manifest"):
        gp.batch_dataset(_config(tmp_path), 0)
    with pytest.raises(gp.GrainPipelineError, match="shard_index"):
        _config(toy_cache, shard_index=2, num_shards=2)


# Installed as `sitecustomize`: TensorFlow and seqio look not installed (find_spec says None,
# imports raise ModuleNotFoundError), as on a GPU image without them; worker processes too.
BLOCKER = textwrap.dedent("""
    import importlib.machinery
    _find = importlib.machinery.PathFinder.find_spec
    def _hidden(cls, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'seqio'):
            return None
        return _find(name, path, target)
    importlib.machinery.PathFinder.find_spec = classmethod(_hidden)
""")


def run_without_tensorflow(code: str, tmp_path: Path, timeout: int = 300
                           ) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python where tensorflow and seqio cannot be imported (worker
    processes inherit the blocker through PYTHONPATH)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=timeout)


def test_grain_path_imports_no_tensorflow(tmp_path):
    proc = run_without_tensorflow(f"""
        import sys
        import mt3x.runs.train, mt3x.runs.gin_registry, mt3x.runs.grain_input
        import mt3x.tasks.cache_build, mt3x.cli.data
        from mt3x.tasks import grain_pipeline as gp
        from mt3x.tasks.synthetic_cache import write_synthetic_cache

        def main():
            cache = write_synthetic_cache({str(tmp_path / 'cache')!r}, tracks=2, seconds=6.0)
            config = gp.GrainPipelineConfig(cache_dir=cache, dataset_name='synthetic',
                                            batch_size=2, worker_count=1)
            batch = next(iter(gp.batch_dataset(config, 0)))
            assert batch['encoder_input_tokens'].shape == (2, 256, 128)
            loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'seqio'))
            print('loaded:', loaded)
            assert not loaded

        if __name__ == '__main__':
            main()
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded: []" in proc.stdout
