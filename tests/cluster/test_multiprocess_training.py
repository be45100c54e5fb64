"""Two processes train MT3 through launch/local_multiprocess.py + launch/train.py, checkpoint,
and a second launch resumes (multiprocess; 4 devices per process and 6 steps: slow, 1 device
per process and 3 steps: in CI)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from launch_helpers import LAUNCH, REPO


TINY_BINDINGS = [
    "--gin_file", "experiments/demo_cpu.gin", "--gin_file", "models/tiny.gin",
    "--gin.TARGET_LENGTH=192", "--gin.MAX_DECODE_LENGTH=48", "--gin.KEEP_BEST=0",
    "--gin.EVAL_EVERY_STEPS=0", "--gin.WARMUP_STEPS=0",
    "--gin.LEARNING_RATE=1e-2", "--gin.mt3x.runs.EvalConfig.transcription=False",
    "--gin.mt3x.runs.EvalConfig.loss_batches=0",
    "--gin.mt3x.runs.ReportConfig.show_progress=False",
    "--gin.mt3x.runs.ReportConfig.tensorboard=False",
    "--gin.mt3x.runs.ReportConfig.log_every_steps=1"]


def _losses_by_process(stdout: str) -> dict[str, dict[int, float]]:
    """{'p0': {step: loss}, 'p1': ...} from the trainer's '[train] step N: ... loss=X' lines."""
    found: dict[str, dict[int, float]] = {}
    for proc, step, loss in re.findall(r"^\[(p\d)\] .*\[train\] step (\d+):.* loss=([-\d.e]+)",
                                       stdout, re.M):
        found.setdefault(proc, {})[int(step)] = float(loss)
    return found


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_train_mt3_checkpoint_and_a_second_launch_resumes(tmp_path_factory):
    _train_then_resume(tmp_path_factory, devices_per_process=4, first_steps=4, total_steps=6)


@pytest.mark.multiprocess
def test_two_processes_train_mt3_checkpoint_and_a_second_launch_resumes_fast(tmp_path_factory):
    """The fast variant (runs in CI): one CPU device per process, 2 steps, resumed to 3."""
    _train_then_resume(tmp_path_factory, devices_per_process=1, first_steps=2, total_steps=3)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_resume_a_grain_run(tmp_path_factory):
    """Each process resumes its own Grain iterator state (host shard i of 2): the checkpoint's
    data item holds every process's position (`mt3x.trainer.data_positions`)."""
    from tests import mt3_testdata as data
    from mt3x.tasks.cache_build import build_cache

    cache = tmp_path_factory.mktemp("launch_mp_cache") / "cache"
    build_cache(data.tiny_dataset(tmp_path_factory), cache, splits=("train",), progress=False)
    _train_then_resume(tmp_path_factory, devices_per_process=1, first_steps=2, total_steps=3,
                       bindings=["--gin.INPUT_PIPELINE='grain'", f"--gin.CACHE_DIR='{cache}'"])


def _train_then_resume(tmp_path_factory, *, devices_per_process: int, first_steps: int,
                       total_steps: int, bindings: list[str] | None = None) -> None:
    """Two processes (jax.distributed over gloo on 127.0.0.1) train the tiny network through
    launch/local_multiprocess.py + launch/train.py for `first_steps` steps (one global loss seen
    by both, one checkpoint); a second launch resumes to `total_steps`, continuing the data
    position and the loss history."""
    from tests import mt3_testdata as data
    from mt3x.trainer import Checkpointer

    dataset = data.tiny_dataset(tmp_path_factory)      # 2 train tracks: one per process
    root = tmp_path_factory.mktemp("launch_mp")
    workdir = root / "run"

    def launch(steps: int, logs: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, str(LAUNCH / "local_multiprocess.py"), "--num_processes", "2",
                "--devices_per_process", str(devices_per_process), "--log_dir",
                str(root / logs), "--", "launch/train.py", *TINY_BINDINGS,
                f"--gin.SAVE_EVERY_STEPS={first_steps}", f"--gin.DATASET_ROOT='{dataset}'",
                f"--gin.TRAIN_STEPS={steps}", *(bindings or []), "--workdir", str(workdir)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=REPO)

    first_range = list(range(1, first_steps + 1))
    first = launch(first_steps, "logs1")
    assert first.returncode == 0, first.stdout[-6000:]
    losses = _losses_by_process(first.stdout)
    assert sorted(losses) == ["p0", "p1"] and sorted(losses["p0"]) == first_range
    assert losses["p0"] == losses["p1"]                # one global loss, seen by both
    for i in (0, 1):
        assert f"trained to step {first_steps} in {workdir}" in (
            root / "logs1" / f"process_{i}.log").read_text()
    checkpoints = Checkpointer(workdir / "checkpoints", read_only=True)
    assert checkpoints.all_steps() == [first_steps]
    checkpoints.close()

    second = launch(total_steps, "logs2")
    assert second.returncode == 0, second.stdout[-6000:]
    resumed = _losses_by_process(second.stdout)
    assert sorted(resumed["p0"]) == list(range(first_steps + 1, total_steps + 1))
    assert resumed["p0"] == resumed["p1"]
    checkpoints = Checkpointer(workdir / "checkpoints", read_only=True)
    assert checkpoints.latest_step() == total_steps
    data_state, meta = checkpoints.read_data_and_meta()
    checkpoints.close()
    per_process = data_state["per_process"]            # every host's own position
    assert len(per_process) == 2 and per_process[0] == {
        k: v for k, v in data_state.items() if k != "per_process"}
    if data_state["kind"] == "grain":                  # Grain: each host shard's iterator
        assert [p["shard"] for p in per_process] == [[0, 2], [1, 2]]
    else:
        assert [p["consumed"] for p in per_process] == [total_steps] * 2   # streams continued
    history = dict(zip(meta["loss_history"]["steps"], meta["loss_history"]["losses"]))
    assert sorted(history) == list(range(1, total_steps + 1))
    for step, loss in {**losses["p0"], **resumed["p0"]}.items():
        assert history[step] == pytest.approx(loss, rel=1e-5)
    assert history[total_steps] < history[1]
