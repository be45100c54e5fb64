"""Resumable training data: replay-and-skip, one-shot iterators, empty and short data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import trainer_toy as toy
from mt3x.trainer import ReplayBatchSource, TrainerError, as_batch_source, train


def _first_inputs(source, n):
    return [b["inputs"].copy() for b in itertools.islice(iter(source), n)]


def test_replay_source_resumes_at_the_consumed_batch():
    source = ReplayBatchSource(toy.batches, seed=5)
    seen = _first_inputs(source, 7)
    state = source.get_state()
    assert state == {"kind": "replay", "seed": 5, "consumed": 7}
    fresh = ReplayBatchSource(toy.batches, seed=0)
    fresh.set_state(state)
    next_three = _first_inputs(fresh, 3)
    reference = _first_inputs(ReplayBatchSource(toy.batches, seed=5), 10)
    for a, b in zip(seen + next_three, reference):
        np.testing.assert_array_equal(a, b)
    assert fresh.get_state()["consumed"] == 10


def test_wrapping_rules_and_unresumable_inputs():
    data = toy.eval_batches(count=3)
    listed = as_batch_source(data)
    assert len(_first_inputs(listed, 5)) == 3  # a list replays, ends when the list ends
    generator = as_batch_source(toy.batches(0))
    generator.set_state({"kind": "replay", "seed": 0, "consumed": 4})
    with pytest.raises(TrainerError, match="one-shot iterator"):
        next(iter(generator))
    short = ReplayBatchSource(lambda seed: data)
    short.set_state({"seed": 0, "consumed": 5})
    with pytest.raises(TrainerError, match="ran out after 3 batches"):
        next(iter(short))
    with pytest.raises(TrainerError, match="got int"):
        as_batch_source(3)


def test_train_rejects_empty_short_and_mis_sized_data(tmp_path):
    common = dict(model=toy.ToyRegressor(), workdir=tmp_path, show_progress=False)
    with pytest.raises(TrainerError, match="yielded no batches"):
        train(train_data=[], num_steps=2, **common)
    with pytest.raises(TrainerError, match="batch_size=16 but the data yields 8 examples"):
        train(train_data=toy.batches, batch_size=16, num_steps=2, **common)
    with pytest.raises(TrainerError, match="nonfinite_policy"):
        train(train_data=toy.batches, num_steps=2, nonfinite_policy="ignore", **common)
