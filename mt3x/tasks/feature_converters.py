"""Feature converter for an encoder-decoder with continuous inputs (t5x / MT3 semantics).

Task features -> the batch keys of docs/INTERFACES.md:
  inputs  f32[F<=L, D]  ->  encoder_input_tokens  f32[L, D]  (zero rows appended)
                            encoder_input_lengths i32[1]     (F: the model zeroes the log-mel
                                                              rows past it, as MT3 does)
  targets i32[T<=N]     ->  decoder_target_tokens i32[N]     (model ids, EOS = 1, PAD = 0)
                            decoder_input_tokens  i32[N]     (targets shifted right, BOS = 0)
                            decoder_loss_weights  f32[N]     (1. where the target is not PAD)
with L = task_feature_lengths['inputs'] (256 frames) and N = task_feature_lengths['targets']
(1024). D is 128 (raw 16 kHz sample frames) or 512 (MT3 log-mel). No packing (MT3 trains
unpacked); loss weights are float32 (t5x uses int32; our trainer multiplies them into f32 losses).
"""

from __future__ import annotations

from typing import Mapping

import seqio
import tensorflow as tf


LENGTHS_FEATURE = "encoder_input_lengths"


class ContinuousInputsEncDecFeatureConverter(seqio.FeatureConverter):
    """Pads continuous `inputs` and token `targets` to fixed lengths; adds decoder inputs/weights.

    Args (keyword, as seqio.FeatureConverter): pack must be False; `passthrough_features` maps
    extra keys (e.g. eval ids) to FeatureSpecs that are passed through unchanged.
    """

    TASK_FEATURES = {
        "inputs": seqio.FeatureConverter.FeatureSpec(dtype=tf.float32, rank=2),
        "targets": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
    }
    MODEL_FEATURES = {
        "encoder_input_tokens": seqio.FeatureConverter.FeatureSpec(dtype=tf.float32, rank=2),
        # rank 1 of length 1 (seqio's converters validate a length for every feature);
        # `mt3x.tasks.registry.make_train_batches` squeezes it to i32[B].
        LENGTHS_FEATURE: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32, rank=1),
        "decoder_target_tokens": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
        "decoder_input_tokens": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
        "decoder_loss_weights": seqio.FeatureConverter.FeatureSpec(dtype=tf.float32),
    }
    PACKING_FEATURE_DTYPES = {}

    def __init__(self, pack: bool = False, **kwargs):
        if pack:
            raise ValueError("ContinuousInputsEncDecFeatureConverter does not pack (MT3 trains "
                             "unpacked): use pack=False")
        super().__init__(pack=False, **kwargs)

    def _convert_features(self, ds: tf.data.Dataset,
                          task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
        passthrough = list(self._passthrough_features)

        def count_frames(features):
            return {**features, LENGTHS_FEATURE: tf.shape(features["inputs"])[:1]}

        def convert(features):
            targets = features["targets"]
            out = {
                "encoder_input_tokens": features["inputs"],
                LENGTHS_FEATURE: tf.minimum(features[LENGTHS_FEATURE],
                                            tf.shape(features["inputs"])[0]),
                "decoder_target_tokens": targets,
                "decoder_input_tokens": seqio.utils.make_autoregressive_inputs(
                    targets, bos_id=self.bos_id),
                "decoder_loss_weights": seqio.feature_converters.non_padding_position(
                    targets, dtype=tf.float32),
            }
            out.update({k: features[k] for k in passthrough})
            return out

        ds = ds.map(count_frames, num_parallel_calls=tf.data.AUTOTUNE)  # before padding
        ds = self._pack_or_pad(ds, task_feature_lengths)
        return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

    def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]
                                  ) -> Mapping[str, int]:
        encoder_length = task_feature_lengths["inputs"]
        decoder_length = task_feature_lengths["targets"]
        lengths = {
            "encoder_input_tokens": encoder_length,
            LENGTHS_FEATURE: 1,
            "decoder_target_tokens": decoder_length,
            "decoder_input_tokens": decoder_length,
            "decoder_loss_weights": decoder_length,
        }
        for k in self._passthrough_features:
            lengths[k] = task_feature_lengths[k]
        return lengths
