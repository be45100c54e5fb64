"""Two processes train MT3 through launch/local_multiprocess.py + launch/train.py, checkpoint,
and a second launch resumes (multiprocess, slow)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from launch_helpers import LAUNCH, REPO


TINY_BINDINGS = [
    "--gin_file", "experiments/demo_cpu.gin", "--gin_file", "models/tiny.gin",
    "--gin.TARGET_LENGTH=192", "--gin.MAX_DECODE_LENGTH=48", "--gin.KEEP_BEST=0",
    "--gin.EVAL_EVERY_STEPS=0", "--gin.SAVE_EVERY_STEPS=2", "--gin.WARMUP_STEPS=0",
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
    from tests import mt3_testdata as data
    from mt3x.trainer import Checkpointer

    dataset = data.tiny_dataset(tmp_path_factory)      # 2 train tracks: one per process
    root = tmp_path_factory.mktemp("launch_mp")
    workdir = root / "run"

    def launch(steps: int, logs: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, str(LAUNCH / "local_multiprocess.py"), "--num_processes", "2",
                "--devices_per_process", "4", "--log_dir", str(root / logs), "--",
                "launch/train.py", *TINY_BINDINGS, f"--gin.DATASET_ROOT='{dataset}'",
                f"--gin.TRAIN_STEPS={steps}", "--workdir", str(workdir)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=REPO)

    first = launch(4, "logs1")
    assert first.returncode == 0, first.stdout[-6000:]
    losses = _losses_by_process(first.stdout)
    assert sorted(losses) == ["p0", "p1"] and sorted(losses["p0"]) == [1, 2, 3, 4]
    assert losses["p0"] == losses["p1"]                # one global loss, seen by both
    for i in (0, 1):
        assert f"trained to step 4 in {workdir}" in (root / "logs1" / f"process_{i}.log"
                                                     ).read_text()
    checkpoints = Checkpointer(workdir / "checkpoints", read_only=True)
    assert checkpoints.all_steps() == [4]
    checkpoints.close()

    second = launch(6, "logs2")
    assert second.returncode == 0, second.stdout[-6000:]
    resumed = _losses_by_process(second.stdout)
    assert sorted(resumed["p0"]) == [5, 6] and resumed["p0"] == resumed["p1"]
    checkpoints = Checkpointer(workdir / "checkpoints", read_only=True)
    assert checkpoints.latest_step() == 6
    data_state, meta = checkpoints.read_data_and_meta()
    checkpoints.close()
    assert data_state["consumed"] == 6                 # each host's stream continued
    history = dict(zip(meta["loss_history"]["steps"], meta["loss_history"]["losses"]))
    assert sorted(history) == [1, 2, 3, 4, 5, 6]
    for step, loss in {**losses["p0"], **resumed["p0"]}.items():
        assert history[step] == pytest.approx(loss, rel=1e-5)
    assert history[6] < history[1]
