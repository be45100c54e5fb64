"""Input-pipeline counters reach the run's train scalars: `pipeline_scalars` sums the counters
over tasks, and `train(train_scalars=...)` writes them with the loss at every report."""

from __future__ import annotations

import logging

import trainer_toy as toy
from mt3x.tasks.counters import (count_event, pipeline_counters, pipeline_scalars,
                                 reset_pipeline_counters)
from mt3x.trainer import CheckpointOptions, adamw, train


def test_pipeline_scalars_sum_each_counter_over_tasks():
    reset_pipeline_counters()
    try:
        count_event("task_a", "examples_too_long", 2)
        count_event("task_b", "examples_too_long")
        count_event("task_a", "examples_seen", 10)
        assert pipeline_counters("task_a") == {"examples_too_long": 2, "examples_seen": 10}
        assert pipeline_scalars() == {"data/examples_seen": 10.0,
                                      "data/examples_too_long": 3.0,
                                      "data/tracks_failed": 0.0}  # reported while 0
    finally:
        reset_pipeline_counters()


def test_train_writes_the_pipeline_counters_with_the_train_scalars(tmp_path, caplog):
    reset_pipeline_counters()
    state = {"calls": 0}

    def batches(seed):
        for batch in toy.batches(seed):
            count_event("toy", "examples_too_long")  # one dropped example per batch
            yield batch

    def scalars():
        state["calls"] += 1
        return pipeline_scalars()

    caplog.set_level(logging.INFO, logger="mt3x.trainer.reporting")
    try:
        train(model=toy.ToyRegressor(), train_data=batches, workdir=tmp_path, num_steps=8,
              batch_size=8, optimizer=adamw(1e-2, weight_decay=0.0),
              checkpoint=CheckpointOptions(save_every_steps=8), show_progress=False,
              log_every_steps=4, tensorboard=False, train_scalars=scalars)
    finally:
        reset_pipeline_counters()
    assert state["calls"] == 2  # steps 4 and 8
    lines = [r.getMessage() for r in caplog.records if "[train]" in r.getMessage()]
    assert len(lines) == 2 and all("data/examples_too_long=" in line for line in lines)
    # The count grows as batches are read (the next batch is fetched ahead of the report).
    counts = [float(line.split("data/examples_too_long=")[1].split(",")[0]) for line in lines]
    assert 4 <= counts[0] < counts[1] <= 9
