"""mt3x.models: MT3's T5.1.1 encoder-decoder (Flax linen) and the MT3 Model object.

```
T5Config, get_config(name, **overrides), CONFIGS  # mt3, ismir2021, base, small_cpu, tiny
Transformer(config)                                # the network; MT3's parameter tree
Mt3Model(config, inputs='frames', z_loss=1e-4, label_smoothing=0., loss_normalization='sum',
         max_decode_length=1024, decoder='cached', logical_axis_rules=None)
    .init(rng, batch) -> boxed params
    .loss(params, batch, rng) -> (loss, metrics)
    .predict(params, batch) -> i32[batch, max_decode_length]
greedy_decode(module, params, encoded, max_decode_length, decoder='cached')
```
"""

from mt3x.models.config import CONFIGS, ModelConfigError, T5Config, get_config
from mt3x.models.decoding import DECODERS, EOS_ID, decoded_lengths, greedy_decode
from mt3x.models.losses import cross_entropy_with_z_loss, weighted_loss_and_metrics
from mt3x.models.mt3_model import BatchError, Mt3Model
from mt3x.models.network import Transformer, init_decoder_cache

#: Logical axis names used by the parameters and activation constraints (t5x's names).
LOGICAL_AXIS_NAMES = ("batch", "length", "embed", "mlp", "heads", "kv", "joined_kv", "vocab")

__all__ = [
    "CONFIGS", "DECODERS", "EOS_ID", "LOGICAL_AXIS_NAMES", "BatchError", "ModelConfigError",
    "Mt3Model", "T5Config", "Transformer", "cross_entropy_with_z_loss", "decoded_lengths",
    "get_config", "greedy_decode", "init_decoder_cache", "weighted_loss_and_metrics",
]
