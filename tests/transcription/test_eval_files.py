"""Evaluation files read from a dataset folder with the numpy chain (`dataset_eval_files`, what
`launch/eval.py` and Grain runs use) equal the seqio eval task's (`seqio_input.load_eval_files`)."""

from __future__ import annotations

import numpy as np
import pytest

from tests import mt3_testdata as data
from mt3x.runs.seqio_input import eval_task_name, load_eval_files, register_dataset
from mt3x.transcription.evaluation import EvaluationError, dataset_eval_files


@pytest.mark.parametrize("split", ["test", "validation"])
def test_numpy_eval_files_equal_the_seqio_eval_task(tmp_path_factory, split):
    root = data.tiny_dataset(tmp_path_factory)
    names = register_dataset(root, dataset_name=f"evalfiles_{split}", in_memory_cache=False,
                             splits=(split,))
    seqio_files = load_eval_files(eval_task_name(names, split))
    numpy_files = dataset_eval_files(root, split)
    assert [f.file_id for f in numpy_files] == [f.file_id for f in seqio_files]
    for ours, theirs in zip(numpy_files, seqio_files):
        assert ours.frames.shape == theirs.frames.shape and ours.frames.shape[0] >= 2
        np.testing.assert_array_equal(ours.frames, theirs.frames)
        np.testing.assert_array_equal(ours.lengths, theirs.lengths)
        np.testing.assert_allclose(ours.start_times, theirs.start_times, atol=1e-6)
        assert ours.reference == theirs.reference


def test_an_empty_split_is_refused_naming_the_folder(tmp_path):
    with pytest.raises(EvaluationError, match=str(tmp_path / "test")):
        dataset_eval_files(tmp_path, "test")
