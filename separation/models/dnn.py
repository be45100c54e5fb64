"""The linear-context DNN of Uhlich, Giron and Mitsufuji (ICASSP 2015), with least-squares growth.

Network (one per instrument): input = gamma-normalised magnitudes of 2C+1 mixture frames
(`separation.context.normalized_context`, (2C+1) * bins values), K dense layers each `bins` wide,
ReLU (or linear) after every layer, output = the instrument's normalised magnitude frame; the
caller multiplies it by gamma.

Layer-wise growth: `grow_by_least_squares` appends a layer whose weights are the least-squares map
from the current network's output (or, for the first layer, the stacked input) to the normalised
target frames, from statistics streamed over the data (`separation.least_squares`). With ReLU
this cannot be worse than the linear map because the targets are non-negative. Gradient training
of all layers (and the final fine-tune) runs on `mt3x.trainer` through the Model object in
`separation.model_objects`.

Choice of sample rate: 16 kHz with n_fft = 256 (129 bins, 62.5 Hz wide, 16 ms frames, hop 128).
The paper used ~31 Hz bins at 32 kHz; at 44.1 kHz a 256-point FFT has 172 Hz bins and the bass
register (41-200 Hz) falls into one or two bins. 16 kHz is also the rate of MT3's front end, so one
resampled copy of a dataset serves both. Finer resolution is a config change (n_fft = 1024 at
32 kHz gives the paper's 513 bins).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mt3x.errors import Mt3xError
from separation import least_squares

Activation = Literal["relu", "linear"]
PyTree = Any


def _activation(name: str) -> Callable[[jnp.ndarray], jnp.ndarray]:
    if name == "relu":
        return nn.relu
    if name == "linear":
        return lambda x: x
    raise Mt3xError(f"DNN activation {name!r}: expected 'relu' or 'linear'")


class ContextDNN(nn.Module):
    """Dense stack `bins` wide; parameters 'layer_0' ... 'layer_{K-1}' ({'kernel', 'bias'}).

    Attributes:
      num_bins: output width (and hidden width), e.g. 129 for n_fft = 256.
      num_layers: K.
      activation: 'relu' or 'linear', applied after every layer (output included).
    """
    num_bins: int
    num_layers: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, inputs: jnp.ndarray, num_active: int | None = None) -> jnp.ndarray:
        """inputs float32[..., (2C+1)*bins] -> float32[..., bins] (normalised magnitudes).

        `num_active` < num_layers runs only the first layers (0 returns the inputs unchanged);
        `grow_by_least_squares` uses it to get a layer's input.
        """
        act = _activation(self.activation)
        active = self.num_layers if num_active is None else num_active
        h = inputs
        for i in range(active):
            h = nn.Dense(
                self.num_bins, name=f"layer_{i}",
                kernel_init=nn.with_logical_partitioning(
                    nn.initializers.glorot_uniform(), ("context" if i == 0 else "embed", "freq")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("freq",)),
            )(h)
            h = act(h)
        return h


def grow_by_least_squares(
    module: ContextDNN,
    params: PyTree | None,
    batches: Iterable[tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    ridge: float = 1e-6,
) -> tuple[ContextDNN, PyTree, least_squares.LeastSquaresStats]:
    """Appends one layer initialised by least squares.

    Args:
      module: the current network (num_layers = k, may be 0).
      params: its unboxed params {'layer_0': {'kernel', 'bias'}, ...} (None or {} when k = 0).
      batches: (inputs float32[n, (2C+1)*bins], targets float32[n, bins]) pairs, optionally with a
        mask float[n]; targets already divided by gamma. Iterated once.
      ridge: relative ridge of the solve (see `least_squares.solve`).

    Returns:
      (module with num_layers = k + 1, params with the new 'layer_k', the statistics used).
    """
    params = dict(params or {})
    k = module.num_layers
    hidden = jax.jit(lambda p, x: module.apply({"params": p}, x, num_active=k))
    stats: least_squares.LeastSquaresStats | None = None
    for item in batches:
        x, s = item[0], item[1]
        mask = item[2] if len(item) > 2 else None
        h = hidden(params, jnp.asarray(x)) if k else jnp.asarray(x)
        if stats is None:
            stats = least_squares.LeastSquaresStats.zeros(h.shape[-1], s.shape[-1])
        stats = stats.add(h, s, mask)
    if stats is None:
        raise Mt3xError("grow_by_least_squares: the batch iterable was empty")
    if stats.mean_s.size != module.num_bins:
        raise Mt3xError(f"targets have {stats.mean_s.size} bins, the network {module.num_bins}")
    w, b = least_squares.solve(stats, ridge=ridge)
    params[f"layer_{k}"] = {"kernel": jnp.asarray(w.T, jnp.float32),
                            "bias": jnp.asarray(b, jnp.float32)}
    grown = module.clone(num_layers=k + 1)
    return grown, params, stats


def box_like(module: ContextDNN, params: PyTree, example_input: jnp.ndarray) -> PyTree:
    """Wraps unboxed params in the module's nn.LogicallyPartitioned boxes (for Model.init)."""
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), example_input))["params"]
    return jax.tree.map(
        lambda box, value: box.replace_boxed(jnp.asarray(value)) if isinstance(box, nn.Partitioned)
        else jnp.asarray(value),
        abstract, params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
