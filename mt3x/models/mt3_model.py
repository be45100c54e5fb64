"""The MT3 Model object: init, loss and predict for the trainer (docs/INTERFACES.md).

Batches use t5x's names:
```
encoder_input_tokens  f32[B, frames, 128]  raw 16 kHz sample frames (inputs='frames'), or
                      f32[B, frames, 512]  log-mel frames            (inputs='log_mel')
decoder_input_tokens  i32[B, L]            targets shifted right, 0 = BOS/PAD
decoder_target_tokens i32[B, L]            model ids, EOS = 1, PAD = 0
decoder_loss_weights  f32[B, L]            1 where a target token counts
encoder_input_lengths i32[B]               optional: valid frames per segment; log-mel rows at
                                           and beyond it are 0.0, as MT3 pads a short segment
```
With `inputs='frames'` the log-mel front end (`mt3x.audio.mt3_log_mel`) runs inside `loss` and
`predict`, i.e. on device inside the jitted step.

Typical use:
```
model = Mt3Model(get_config('mt3'))
boxed = model.init(jax.random.key(0), batch)          # nn.LogicallyPartitioned leaves
params = nn.unbox(boxed)
loss, metrics = jax.jit(model.loss)(params, batch, jax.random.key(1))
tokens = jax.jit(model.predict)(params, batch)       # i32[B, max_decode_length]
```
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mt3x.audio.mt3_config import INPUT_MODES, MT3_SPECTROGRAM_CONFIG
from mt3x.audio.mt3_frontend import mt3_log_mel
from mt3x.errors import Mt3xError
from mt3x.models.config import T5Config, get_config
from mt3x.models.decoding import DECODERS, greedy_decode
from mt3x.models.losses import LOSS_NORMALIZATIONS, weighted_loss_and_metrics
from mt3x.models.network import Transformer

Array = jax.Array
Batch = Mapping[str, Any]

#: Samples per encoder frame of the raw-audio batch (hop 128 at 16 kHz).
AUDIO_FRAME_SIZE = MT3_SPECTROGRAM_CONFIG.hop_width
#: Input-mode names before mt3x used `INPUT_MODES` everywhere; checkpoints saved then
#: (mt3x_model.json "inputs") still load. The only place the old names are understood.
LEGACY_INPUT_MODES = {"audio": "frames", "spectrogram": "log_mel"}
TRAIN_KEYS = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
              "decoder_loss_weights")
#: Optional batch field: int32[B] valid frames of each segment (see `encoder_features`).
LENGTHS_KEY = "encoder_input_lengths"


class BatchError(Mt3xError):
    """A batch lacks a field or has the wrong shape for this model."""


class Mt3Model:
    """MT3 encoder-decoder with t5x's loss and batched greedy decoding.

    Args:
      config: a `T5Config` or the name of one (`mt3`, `ismir2021`, `base`, `small_cpu`, `tiny`).
      inputs: one of `mt3x.audio.mt3_config.INPUT_MODES`: 'frames' (raw sample frames; the
        model computes the log-mel) or 'log_mel' (MT3's spectrogram inputs). The names of older
        checkpoints, 'audio' and 'spectrogram', are read as 'frames' and 'log_mel'.
      z_loss: coefficient of the log-partition penalty (MT3: 1e-4).
      label_smoothing: t5x label smoothing (MT3: 0; ISMIR 2022 pretraining: 0.1).
      loss_normalization: 'sum' over target tokens (MT3) or 'mean' per target token.
      max_decode_length: output length of `predict` (MT3: 1024).
      decoder: `predict`'s strategy, 'cached' (default), 'self_cache' (t5x-like) or 'uncached'.
      logical_axis_rules: if given, `init`, `loss` and `predict` run inside
        `nn.logical_axis_rules(rules)` so activation constraints map to mesh axes; leave None
        when the caller (the trainer) sets the rules itself.
    """

    def __init__(self, config: T5Config | str = "mt3", *, inputs: str = "frames",
                 z_loss: float = 1e-4, label_smoothing: float = 0.0,
                 loss_normalization: str = "sum", max_decode_length: int = 1024,
                 decoder: str = "cached",
                 logical_axis_rules: Sequence[tuple[str, Any]] | None = None) -> None:
        self.config = get_config(config) if isinstance(config, str) else config
        inputs = LEGACY_INPUT_MODES.get(inputs, inputs)
        if inputs not in INPUT_MODES:
            raise Mt3xError(f"Mt3Model.inputs: expected one of {INPUT_MODES}, got {inputs!r}")
        if loss_normalization not in LOSS_NORMALIZATIONS:
            raise Mt3xError(f"Mt3Model.loss_normalization: expected one of "
                            f"{LOSS_NORMALIZATIONS}, got {loss_normalization!r}")
        if decoder not in DECODERS:
            raise Mt3xError(f"Mt3Model.decoder: expected one of {DECODERS}, got {decoder!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise Mt3xError(f"Mt3Model.label_smoothing: expected 0 <= value < 1, "
                            f"got {label_smoothing}")
        if not 0 < max_decode_length <= self.config.max_length:
            raise Mt3xError(f"Mt3Model.max_decode_length: expected 1..{self.config.max_length}, "
                            f"got {max_decode_length}")
        self.inputs = inputs
        self.z_loss = float(z_loss)
        self.label_smoothing = float(label_smoothing)
        self.loss_normalization = loss_normalization
        self.max_decode_length = int(max_decode_length)
        self.decoder = decoder
        self.logical_axis_rules = (tuple(tuple(rule) for rule in logical_axis_rules)
                                   if logical_axis_rules is not None else None)
        self.network = Transformer(self.config)

    # ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _rules(self) -> Iterator[None]:
        if self.logical_axis_rules is None:
            yield
        else:
            with nn.logical_axis_rules(self.logical_axis_rules):
                yield

    def _check_batch(self, batch: Batch, keys: Sequence[str]) -> None:
        missing = [key for key in keys if key not in batch]
        if missing:
            raise BatchError(f"batch: missing field(s) {missing}; got {sorted(batch)}")
        enc = batch["encoder_input_tokens"]
        depth = AUDIO_FRAME_SIZE if self.inputs == "frames" else self.config.input_depth
        if len(enc.shape) != 3 or enc.shape[-1] != depth:
            what = "raw sample frames" if self.inputs == "frames" else "log-mel frames"
            raise BatchError(f"batch['encoder_input_tokens']: expected {what} of shape "
                             f"[batch, frames, {depth}] (inputs={self.inputs!r}), got "
                             f"{tuple(enc.shape)}")
        for key in keys[1:]:
            if tuple(batch[key].shape[:1]) != tuple(enc.shape[:1]) or len(batch[key].shape) != 2:
                raise BatchError(f"batch[{key!r}]: expected shape [{enc.shape[0]}, length], got "
                                 f"{tuple(batch[key].shape)}")
        lengths = batch.get(LENGTHS_KEY)
        if lengths is not None and tuple(lengths.shape) != tuple(enc.shape[:1]):
            raise BatchError(f"batch[{LENGTHS_KEY!r}]: expected shape [{enc.shape[0]}] (valid "
                             f"frames per segment), got {tuple(lengths.shape)}")

    def encoder_features(self, encoder_input_tokens: Array,
                         encoder_input_lengths: Array | None = None) -> Array:
        """Batch encoder fields -> float32[batch, frames, input_depth] log-mel frames.

        With `encoder_input_lengths` (int[batch] valid frames), rows at and beyond a segment's
        length are 0.0: MT3 computes a short segment's log-mel from its own samples and pads
        with zero rows (raw-audio inputs; spectrogram inputs are zeroed the same way)."""
        if self.inputs == "log_mel":
            features = jnp.asarray(encoder_input_tokens, jnp.float32)
            if encoder_input_lengths is None:
                return features
            frames = jnp.arange(features.shape[1])
            valid = jnp.asarray(encoder_input_lengths)[:, None] > frames
            return jnp.where(valid[..., None], features, 0.0)
        return mt3_log_mel(jnp.asarray(encoder_input_tokens, jnp.float32),
                           num_valid_frames=encoder_input_lengths)

    # ---------------------------------------------------------------------------------------
    def init(self, rng: Array, batch: Batch) -> Any:
        """Initial parameters, leaves boxed as `nn.LogicallyPartitioned`.

        Only the shapes of `batch` matter (arrays or `jax.ShapeDtypeStruct`s); the front end is
        not run. Works under `jax.eval_shape` for abstract initialisation.
        """
        self._check_batch(batch, ("encoder_input_tokens",))
        enc_shape = tuple(batch["encoder_input_tokens"].shape)
        dec = batch.get("decoder_input_tokens")
        dec_shape = tuple(dec.shape) if dec is not None else (enc_shape[0], 1)
        features = jnp.zeros(enc_shape[:2] + (self.config.input_depth,), jnp.float32)
        tokens = jnp.zeros(dec_shape, jnp.int32)
        with self._rules():
            variables = self.network.init({"params": rng}, features, tokens, tokens,
                                          enable_dropout=False)
        return variables["params"]

    def logits(self, params: Any, batch: Batch, rng: Array | None = None) -> Array:
        """Teacher-forced float32[batch, length, vocab]; dropout on iff `rng` is given."""
        self._check_batch(batch, TRAIN_KEYS[:3])
        features = self.encoder_features(batch["encoder_input_tokens"], batch.get(LENGTHS_KEY))
        enable_dropout = rng is not None and self.config.dropout_rate > 0.0
        rngs = {"dropout": rng} if enable_dropout else {}
        with self._rules():
            return self.network.apply(
                {"params": params}, features, jnp.asarray(batch["decoder_input_tokens"]),
                jnp.asarray(batch["decoder_target_tokens"]), enable_dropout=enable_dropout,
                rngs=rngs)

    def loss(self, params: Any, batch: Batch, rng: Array | None = None, *,
             deterministic: bool = False) -> tuple[Array, dict[str, Array]]:
        """Cross-entropy + z-loss over weighted target tokens.

        Args:
          params: unboxed parameters.
          batch: the four training fields (see the module docstring).
          rng: dropout key; None (or `deterministic=True`) disables dropout (evaluation).

        Returns:
          (float32 scalar loss, {'loss', 'cross_entropy', 'z_loss', 'accuracy', 'num_tokens'}).
        """
        self._check_batch(batch, TRAIN_KEYS)
        logits = self.logits(params, batch, None if deterministic else rng)
        return weighted_loss_and_metrics(
            logits, jnp.asarray(batch["decoder_target_tokens"]),
            jnp.asarray(batch["decoder_loss_weights"]), z_loss=self.z_loss,
            label_smoothing=self.label_smoothing, normalization=self.loss_normalization)

    def encode(self, params: Any, batch: Batch) -> Array:
        """Deterministic encoder outputs `dtype`[batch, frames, emb]."""
        self._check_batch(batch, ("encoder_input_tokens",))
        features = self.encoder_features(batch["encoder_input_tokens"], batch.get(LENGTHS_KEY))
        with self._rules():
            return self.network.apply({"params": params}, features, method=Transformer.encode)

    def predict(self, params: Any, batch: Batch, *, max_decode_length: int | None = None,
                decoder: str | None = None) -> Array:
        """Greedy transcription of each segment: int32[batch, max_decode_length] model ids.

        EOS (1) is kept, positions after it are 0; decoding stops once every segment has
        emitted EOS. Only `batch['encoder_input_tokens']` (and `encoder_input_lengths` when
        present) is read. Wrap in `jax.jit`.
        """
        encoded = self.encode(params, batch)
        with self._rules():
            return greedy_decode(self.network, params, encoded,
                                 max_decode_length or self.max_decode_length,
                                 decoder=decoder or self.decoder)
