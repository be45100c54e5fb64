"""Every process's data position in a checkpoint (mt3x.trainer.data_positions); the two-process
save/resume round trip is in tests/cluster/test_multiprocess_training.py."""

import pytest

from mt3x.trainer.data_positions import PER_PROCESS, gather_data_states, own_data_state
from mt3x.trainer.errors import CheckpointError


def test_one_process_saves_its_position_unchanged():
    state = {"kind": "grain", "shard": [0, 1], "iterator": "{}"}
    assert gather_data_states(state) == state
    assert own_data_state(state) == state


def test_a_process_resumes_its_own_entry():
    saved = {"consumed": 7, PER_PROCESS: [{"consumed": 7}]}
    assert own_data_state(saved) == {"consumed": 7}
    saved = {"consumed": 7, PER_PROCESS: [{"consumed": 3}]}   # the entry wins over the top level
    assert own_data_state(saved) == {"consumed": 3}


def test_a_checkpoint_of_another_process_count_is_refused():
    saved = {"consumed": 7, PER_PROCESS: [{"consumed": 7}, {"consumed": 7}]}
    with pytest.raises(CheckpointError, match="saved by 2 processes; this run has 1"):
        own_data_state(saved)
