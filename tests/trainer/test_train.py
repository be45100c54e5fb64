"""The training loop end to end on the toy model: learning, sharding parity, resume, best-k,
freezing, NaN guard, restoring onto another mesh, and checkpoint errors."""

from __future__ import annotations

import functools
import shutil

import jax
import numpy as np
import pytest

import trainer_toy as toy
from mt3x.trainer import (CheckpointError, Checkpointer, CheckpointOptions, NonFiniteLossError,
                          Partitioner, adafactor_mt3, adamw, create_train_state, freeze, train)
from mt3x.trainer.checkpoints import numpy_tree
from mt3x.trainer.steps import jit_train_step, train_step_fn
from mt3x.trainer.train_state import abstract_train_state

QUIET = dict(show_progress=False, log_every_steps=4)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def test_loss_falls_and_run_reports(tmp_path):
    result = train(model=toy.ToyRegressor(), train_data=toy.batches, workdir=tmp_path,
                   num_steps=40, batch_size=8, optimizer=adamw(1e-2, weight_decay=0.0),
                   eval_data=toy.eval_batches(), eval_every_steps=20,
                   checkpoint=CheckpointOptions(save_every_steps=20), gin_config="x = 1\n",
                   **QUIET)
    losses = [result.losses[s] for s in range(1, 41)]
    assert np.mean(losses[-5:]) < 0.4 * np.mean(losses[:5])
    # Untrained, the loss is ~0.7 (first steps above); both evaluations are far below it.
    assert max(result.eval_history[s]["eval/loss"] for s in (20, 40)) < 0.25
    assert set(result.eval_history[40]) == {"eval/loss", "eval/mae", "eval/num_batches"}
    # Reports: TensorBoard event files, the loss curve, the operative config (also in the ckpt).
    for collection in ("train", "eval"):
        assert list((tmp_path / "tensorboard" / collection).glob("events.out.tfevents.*"))
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "operative_config.gin").read_text() == "x = 1\n"
    checkpointer = Checkpointer(tmp_path / "checkpoints", read_only=True)
    assert checkpointer.all_steps() == [40]
    data_state, meta = checkpointer.read_data_and_meta()
    checkpointer.close()
    assert meta["gin_config"] == "x = 1\n" and data_state["consumed"] == 40
    assert meta["loss_history"]["steps"] == list(range(1, 41))


def _run_steps(partitioner, batches, model, tx):
    first = batches[0]
    state = create_train_state(model=model, optimizer=tx, partitioner=partitioner, batch=first,
                               seed=3)
    abstract = abstract_train_state(model=model, optimizer=tx, partitioner=partitioner,
                                    batch=first)
    step = jit_train_step(train_step_fn(model, tx), partitioner, abstract)
    losses = []
    with partitioner.activate():
        for batch in batches:
            state, metrics = step(state, partitioner.make_global_batch(batch))
            losses.append(float(metrics["loss"]))
    return losses, state


def test_train_step_on_8_devices_matches_1_device():
    model = toy.ToyRegressor(dropout=0.2)  # dropout: the step keys must agree across meshes
    rng = np.random.default_rng(0)
    batches = [toy.make_batch(rng, 16) for _ in range(3)]
    eight = Partitioner(num_partitions=2)
    one = Partitioner(devices=jax.devices()[:1])
    assert eight.mesh.devices.size == 8 and one.mesh.devices.size == 1
    losses8, state8 = _run_steps(eight, batches, model, adafactor_mt3(1e-2))
    losses1, state1 = _run_steps(one, batches, model, adafactor_mt3(1e-2))
    np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
    assert losses8[0] != losses8[1]
    for a, b in zip(_leaves(state8), _leaves(state1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _crashing_batches(seed, *, crash_at):
    """toy.batches, but raises (like a killed process) when batch `crash_at` is requested."""
    for i, batch in enumerate(toy.batches(seed)):
        if i == crash_at:
            raise RuntimeError("simulated crash")
        yield batch


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A 12-step run with dropout and Adafactor, checkpoints every 4 steps."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    result = train(model=toy.ToyRegressor(dropout=0.1), train_data=toy.batches, workdir=workdir,
                   num_steps=12, seed=7, checkpoint=CheckpointOptions(save_every_steps=4),
                   **QUIET)
    return workdir, result


def test_kill_and_resume_continues_with_the_same_losses(tmp_path, uninterrupted):
    _, reference = uninterrupted
    kwargs = dict(model=toy.ToyRegressor(dropout=0.1), workdir=tmp_path, num_steps=12, seed=7,
                  checkpoint=CheckpointOptions(save_every_steps=4), **QUIET)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(train_data=functools.partial(_crashing_batches, crash_at=9), **kwargs)
    # The async save of step 8 was awaited although the run died at step 10.
    assert Checkpointer(tmp_path / "checkpoints", read_only=True).all_steps() == [8]
    resumed = train(train_data=toy.batches, **kwargs)
    assert sorted(resumed.losses) == [9, 10, 11, 12]
    for step in range(9, 13):
        assert resumed.losses[step] == reference.losses[step]
    for a, b in zip(_leaves(resumed.state), _leaves(reference.state)):
        np.testing.assert_array_equal(a, b)
    # Calling train again on a finished run trains nothing and keeps the state.
    again = train(train_data=toy.batches, **kwargs)
    assert again.losses == {} and again.step == 12


@pytest.mark.parametrize("mode, kept, restart_at", [("max", [4, 8, 10], 6),
                                                     ("min", [2, 10], None)])
def test_best_k_keeps_the_best_steps_and_the_latest(tmp_path, mode, kept, restart_at):
    scores = {2: 0.1, 4: 0.9, 6: 0.5, 8: 0.7, 10: 0.2}
    kwargs = dict(model=toy.ToyRegressor(), train_data=toy.batches, workdir=tmp_path,
                  partitioner=Partitioner(devices=jax.devices()[:1]),
                  evaluators=[lambda params, step: {"score": scores[step]}], eval_every_steps=2,
                  checkpoint=CheckpointOptions(save_every_steps=100, keep_best=2,
                                               best_metric="eval/score", best_mode=mode),
                  **QUIET)
    if restart_at:  # the ranking of earlier steps must survive a restart
        train(num_steps=restart_at, **kwargs)
    result = train(num_steps=10, **kwargs)
    assert result.eval_history[8] == {"eval/score": 0.7}
    assert Checkpointer(tmp_path / "checkpoints", read_only=True).all_steps() == kept


def test_frozen_parameters_do_not_move(tmp_path):
    model = toy.ToyRegressor()
    tx = freeze(adamw(1e-2, weight_decay=0.1), ["^wi/"])
    initial = create_train_state(model=model, optimizer=tx, partitioner=Partitioner(),
                                 batch=toy.make_batch(np.random.default_rng(0), 8), seed=0)
    initial = numpy_tree(initial.params)["params"]
    result = train(model=model, train_data=toy.batches, workdir=tmp_path, num_steps=3,
                   optimizer=tx, seed=0, **QUIET)
    final = numpy_tree(result.state.params)["params"]
    np.testing.assert_array_equal(final["wi"]["kernel"], initial["wi"]["kernel"])
    np.testing.assert_array_equal(final["wi"]["bias"], initial["wi"]["bias"])
    assert np.abs(final["wo"]["kernel"] - initial["wo"]["kernel"]).max() > 1e-3


def _batches_with_nan(seed, *, nan_at):
    for i, batch in enumerate(toy.batches(seed)):
        if i == nan_at:
            batch = dict(batch, inputs=np.full_like(batch["inputs"], np.nan))
        yield batch


def test_nonfinite_steps_are_skipped_or_stop_the_run(tmp_path):
    data = functools.partial(_batches_with_nan, nan_at=2)
    part = Partitioner(devices=jax.devices()[:1])
    result = train(model=toy.ToyRegressor(), train_data=data, workdir=tmp_path / "skip",
                   num_steps=4, partitioner=part, **QUIET)
    assert result.nonfinite_steps == 1 and np.isnan(result.losses[3])
    assert np.isfinite(result.losses[4])
    assert all(np.isfinite(leaf).all() for leaf in _leaves(result.state.params))
    with pytest.raises(NonFiniteLossError, match="step 3: non-finite loss nan"):
        train(model=toy.ToyRegressor(), train_data=data, workdir=tmp_path / "raise",
              num_steps=4, partitioner=part, nonfinite_policy="raise", **QUIET)


def test_restore_onto_another_mesh_and_params_only(tmp_path, uninterrupted):
    workdir, reference = uninterrupted
    model = toy.ToyRegressor(dropout=0.1)
    batch = toy.make_batch(np.random.default_rng(0), 8)
    # Written on an 8x1 mesh, restored onto 1 device and onto a 2x4 (data x model) mesh.
    for part in (Partitioner(devices=jax.devices()[:1]), Partitioner(num_partitions=4)):
        abstract = abstract_train_state(model=model, optimizer=adafactor_mt3(),
                                        partitioner=part, batch=batch)
        checkpointer = Checkpointer(workdir / "checkpoints", read_only=True)
        state, data_state, _ = checkpointer.restore(abstract)
        checkpointer.close()
        assert data_state["consumed"] == 12 and int(state.step) == 12
        assert state.params["params"]["wi"]["kernel"].sharding.mesh == part.mesh
        for a, b in zip(_leaves(state), _leaves(reference.state)):
            np.testing.assert_array_equal(a, b)
    # Fine-tuning: params from the checkpoint, a new optimizer (AdamW), a fresh step count.
    tuned = train(model=model, train_data=toy.batches, workdir=tmp_path, num_steps=1,
                  optimizer=adamw(0.0), init_params_from=workdir, seed=99, **QUIET)
    assert tuned.step == 1
    for a, b in zip(_leaves(tuned.state.params), _leaves(reference.state.params)):
        np.testing.assert_array_equal(a, b)  # lr 0: the restored params unchanged


def test_checkpoint_of_another_model_missing_or_partial_is_a_clear_error(tmp_path,
                                                                          uninterrupted):
    workdir, _ = uninterrupted
    with pytest.raises(CheckpointError, match=r"(?s)checkpoints/12 does not match this model.*"
                       r"'params/params/wi/bias' has shape \(32,\) in the checkpoint, "
                       r"expected \(16,\)"):
        train(model=toy.ToyRegressor(hidden=16), train_data=toy.batches, workdir=workdir,
              num_steps=20, **QUIET)
    with pytest.raises(CheckpointError, match="does not exist"):
        Checkpointer(tmp_path / "nowhere", read_only=True)
    partial = tmp_path / "partial" / "checkpoints"
    shutil.copytree(workdir / "checkpoints" / "12", partial / "12")
    (partial / "12" / "commit_success.txt").unlink()
    with pytest.raises(CheckpointError, match=r"partial .* \['12'\]"):
        train(model=toy.ToyRegressor(), train_data=toy.batches, workdir=tmp_path / "ft",
              num_steps=1, init_params_from=partial.parent, **QUIET)
