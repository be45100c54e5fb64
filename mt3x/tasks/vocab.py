"""seqio vocabulary over the MT3 codec: model id = codec id + 3 (0 PAD, 1 EOS, 2 UNK).

`vocab_size` keeps seqio's meaning (special + codec ids + 100 extra ids = 1491 for `mt3`, 1617
for `ismir2021`); `num_embeddings` is the model's embedding / logit width, rounded up to a
multiple of 128 (1536 for `mt3`, 1664 for `ismir2021`), as MT3's `vocabularies.num_embeddings`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import seqio
import tensorflow as tf

from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.codec.vocabulary import (DECODED_EOS_ID, DECODED_INVALID_ID, EOS_ID,
                                   NUM_SPECIAL_TOKENS, PAD_ID, UNK_ID)


class CodecVocabulary(seqio.Vocabulary):
    """Pass-through vocabulary of codec ids (MT3's GenericTokenVocabulary) for seqio tasks.

    encode: codec ids int[n] in [0, num_classes) -> model ids int[n] (+3); out-of-range ids raise.
    decode: model ids -> codec ids; EOS -> -1 (and everything after it), PAD / UNK / extra ids /
    ids >= 3 + num_classes -> -2.

    Args:
      num_classes: number of codec ids (1388 for `mt3`).
      extra_ids: unused ids after the codec ids (100, as T5).
    """

    def __init__(self, num_classes: int, extra_ids: int = codec_vocabulary.DEFAULT_EXTRA_IDS):
        self._num_regular_tokens = int(num_classes)
        super().__init__(extra_ids=extra_ids)

    @classmethod
    def from_preset(cls, name: str) -> "CodecVocabulary":
        """The vocabulary of a codec preset ('mt3' or 'ismir2021')."""
        return cls(codec_vocabulary.get_config(name).codec.num_classes)

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def num_classes(self) -> int:
        return self._num_regular_tokens

    @property
    def _base_vocab_size(self) -> int:
        return NUM_SPECIAL_TOKENS + self._num_regular_tokens

    @property
    def num_embeddings(self) -> int:
        """Embedding / logit rows of the model: vocab_size rounded up to a multiple of 128."""
        return 128 * math.ceil(self.vocab_size / 128)

    def _encode(self, s: Sequence[int]) -> Sequence[int]:
        ids = np.asarray(s, np.int64).reshape(-1)
        bad = (ids < 0) | (ids >= self._num_regular_tokens)
        if bad.any():
            raise ValueError(f"codec id {int(ids[bad][0])} is outside [0, "
                             f"{self._num_regular_tokens})")
        return (ids + NUM_SPECIAL_TOKENS).astype(np.int32).tolist()

    def _decode(self, ids: Sequence[int]) -> Sequence[int]:
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                out.append(DECODED_EOS_ID)
            elif i < NUM_SPECIAL_TOKENS or i >= self._base_vocab_size:
                out.append(DECODED_INVALID_ID)
            else:
                out.append(i - NUM_SPECIAL_TOKENS)
        return out

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        with tf.control_dependencies([
                tf.debugging.assert_less(s, tf.cast(self._num_regular_tokens, s.dtype)),
                tf.debugging.assert_greater_equal(s, tf.cast(0, s.dtype))]):
            return s + NUM_SPECIAL_TOKENS

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        after_eos = tf.cast(tf.cumsum(tf.cast(tf.equal(ids, self.eos_id), tf.int32), axis=-1),
                            tf.bool)
        valid = tf.logical_and(ids >= NUM_SPECIAL_TOKENS, ids < self._base_vocab_size)
        return tf.where(after_eos, DECODED_EOS_ID,
                        tf.where(valid, ids - NUM_SPECIAL_TOKENS, DECODED_INVALID_ID))

    def __eq__(self, other) -> bool:
        return (isinstance(other, CodecVocabulary) and self.extra_ids == other.extra_ids
                and self._num_regular_tokens == other._num_regular_tokens)

    def __hash__(self) -> int:
        return hash((self._num_regular_tokens, self.extra_ids))
