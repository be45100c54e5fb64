"""mt3x.trainer: the model-agnostic T5X equivalent (knows nothing of music).

- `Partitioner`: mesh ('data', 'model'), logical-axis rules, shardings, global batches.
- `train(...)`: the loop (resume, steps, eval, checkpoints, TensorBoard, progress bar).
- optimizers: `adafactor_mt3`, `adamw`, schedules, `freeze`, `accumulate_gradients`.
- `Checkpointer` / `restore_params`: Orbax checkpoints (latest + best k, any mesh).
- `Model`: the protocol a model implements; `BatchSource`: resumable training data.
"""

from mt3x.trainer.batch_source import BatchSource, ReplayBatchSource, as_batch_source
from mt3x.trainer.checkpoints import Checkpointer, CheckpointOptions, restore_params
from mt3x.trainer.errors import (CheckpointError, NonFiniteLossError, ShardingError,
                                 TrainerError)
from mt3x.trainer.loop import Evaluator, TrainResult, train
from mt3x.trainer.model_api import Model
from mt3x.trainer.optimizers import (accumulate_gradients, adafactor_mt3, adamw,
                                     constant_schedule, freeze, freeze_mask, make_optimizer,
                                     warmup_cosine_schedule, warmup_rsqrt_schedule)
from mt3x.trainer.partitioning import STANDARD_LOGICAL_AXIS_RULES, Partitioner
from mt3x.trainer.train_state import TrainState, abstract_train_state, create_train_state

__all__ = [
    "BatchSource", "ReplayBatchSource", "as_batch_source", "Checkpointer", "CheckpointOptions",
    "restore_params", "CheckpointError", "NonFiniteLossError", "ShardingError", "TrainerError",
    "Evaluator", "TrainResult", "train", "Model", "accumulate_gradients", "adafactor_mt3",
    "adamw", "constant_schedule", "freeze", "freeze_mask", "make_optimizer",
    "warmup_cosine_schedule", "warmup_rsqrt_schedule", "STANDARD_LOGICAL_AXIS_RULES",
    "Partitioner", "TrainState", "abstract_train_state", "create_train_state",
]
