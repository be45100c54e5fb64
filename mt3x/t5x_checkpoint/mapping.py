"""t5x array names <-> our parameter tree, config inference and the import report.

Our tree is MT3's: the t5x array `target.decoder.layers_0.self_attention.query.kernel` is our
`params['decoder']['layers_0']['self_attention']['query']['kernel']`. Names below are the
dotted t5x names without the leading 'target.'.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from mt3x.models import CONFIGS, Mt3Model, T5Config
from mt3x.t5x_checkpoint.errors import T5xCheckpointError
from mt3x.util.trees import flatten_nested, unflatten_nested

TARGET_PREFIX = "target."
OPTIMIZER_STATE_PREFIX = "state.param_states."
Shape = tuple[int, ...]
_LAYER = re.compile(r"^(encoder|decoder)\.layers_(\d+)\.")
_QUERY = "encoder.layers_0.attention.query.kernel"


def flatten_params(tree: Any) -> dict[str, Any]:
    """Nested params -> {'decoder.logits_dense.kernel': leaf, ...}."""
    return flatten_nested(tree, ".")


def unflatten_params(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{'a.b.c': leaf} -> {'a': {'b': {'c': leaf}}}."""
    return unflatten_nested(flat, ".")


def expected_param_shapes(config: T5Config) -> dict[str, Shape]:
    """Dotted name -> shape of every parameter of `config` (abstract: nothing is allocated)."""
    return dict(_expected_param_shapes(config))


@functools.lru_cache(maxsize=16)
def _expected_param_shapes(config: T5Config) -> tuple[tuple[str, Shape], ...]:
    model = Mt3Model(config, inputs="log_mel")
    batch = {"encoder_input_tokens": jax.ShapeDtypeStruct((1, 1, config.input_depth), np.float32),
             "decoder_input_tokens": jax.ShapeDtypeStruct((1, 1), np.int32)}
    abstract = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), batch))
    return tuple((name, tuple(leaf.shape)) for name, leaf in flatten_params(abstract).items())


def _config_from_shapes(shapes: Mapping[str, Shape], num_heads: int | None,
                        head_dim: int | None) -> T5Config:
    """A T5Config whose parameter shapes are `shapes`, with the given head split."""
    try:
        vocab, emb = shapes["decoder.token_embedder.embedding"]
        input_depth = shapes["encoder.continuous_inputs_projection.kernel"][0]
        joined = shapes["encoder.layers_0.attention.query.kernel"][1]
    except (KeyError, ValueError) as err:
        raise T5xCheckpointError(
            f"cannot infer the model size: the checkpoint lacks {err} (an MT3 encoder-decoder "
            "has decoder.token_embedder.embedding, encoder.continuous_inputs_projection.kernel "
            "and encoder.layers_0.attention.query.kernel); pass --config") from err
    if num_heads is None and head_dim is None:
        raise T5xCheckpointError(
            f"cannot tell the attention head count: no named config fits the shapes, and query "
            f"kernels are [emb, heads * head_dim] with heads * head_dim = {joined} (MT3 has no "
            f"relative-position table and no t5x config.gin was found beside the checkpoint); "
            f"pass it, e.g. --config heads=N (head_dim = {joined} / N)")
    num_heads = num_heads or joined // head_dim  # type: ignore[operator]
    head_dim = head_dim or joined // num_heads
    layers = {"encoder": set(), "decoder": set()}
    for name in shapes:
        match = _LAYER.match(name)
        if match:
            layers[match.group(1)].add(int(match.group(2)))
    wi = sorted(n for n in shapes if n.startswith("encoder.layers_0.mlp.wi"))
    mlp_dim = shapes[wi[0]][1] if wi else 0
    activations = ("relu",) if wi == ["encoder.layers_0.mlp.wi.kernel"] else \
        ("gelu",) + ("linear",) * (len(wi) - 1)
    return T5Config(vocab_size=vocab, emb_dim=emb, num_heads=num_heads, head_dim=head_dim,
                    mlp_dim=mlp_dim, input_depth=input_depth,
                    num_encoder_layers=len(layers["encoder"]),
                    num_decoder_layers=len(layers["decoder"]), mlp_activations=activations)


def infer_config(shapes: Mapping[str, Shape], *, num_heads: int | None = None,
                 head_dim: int | None = None) -> tuple[str, T5Config]:
    """(name, config) fitting the parameter `shapes` (dotted names without 'target.').

    Shapes do not tell the head split (query kernels are [emb, heads * head_dim]), so it comes
    from `num_heads` / `head_dim` when given (`mt3x.t5x_checkpoint.config_option` reads them
    from --config or t5x's config.gin). A named config (`mt3`, `ismir2021`, ...) whose every
    shape matches, and whose split agrees with those given, wins; with no split given, so does
    the named config of the same embedding and attention widths that most shapes match (so a
    damaged checkpoint is reported against it); otherwise a config is built from the shapes,
    named 'inferred', assuming MT3's gated-GELU MLP.

    Raises:
      T5xCheckpointError: no named config fits and no head split is given (never guessed).
    """
    embedding = tuple(shapes.get("decoder.token_embedder.embedding", ()))
    for name, config in CONFIGS.items():  # cheap checks first: abstract inits take a second
        if embedding == (config.vocab_size, config.emb_dim) and \
                num_heads in (None, config.num_heads) and head_dim in (None, config.head_dim) \
                and expected_param_shapes(config) == dict(shapes):
            return name, config
    if num_heads is None and head_dim is None:  # a damaged named checkpoint: report against it
        query = tuple(shapes.get(_QUERY, ()))
        near = [(sum(tuple(s) == shapes.get(n) for n, s in expected_param_shapes(c).items()), n)
                for n, c in CONFIGS.items()
                if embedding == (c.vocab_size, c.emb_dim) and
                query == (c.emb_dim, c.num_heads * c.head_dim)]
        if near:
            name = max(near)[1]
            return name, CONFIGS[name]
    return "inferred", _config_from_shapes(shapes, num_heads, head_dim)


@dataclasses.dataclass
class ImportReport:
    """How the arrays of a t5x checkpoint fit our parameter tree.

    source: checkpoint path; layout: 'legacy' or 'orbax'; config_name: the model config used.
    matched: names mapped onto our tree. missing: {name: expected shape} absent from the file.
    extra: {name: shape} in the file but not in our tree. mis_shaped: {name: (expected, found)}.
    skipped: {name: shape} not imported on purpose (Adafactor state, step).
    cast: {name: 'bfloat16->float32'} arrays converted to our float32 parameters.
    storage: {'inline': n, 'zarr': m} (legacy) or {'orbax': n}.
    model_spec: the mt3x_model.json written on import (vocabulary, inputs), or why none was.
    """

    source: str
    layout: str
    config_name: str
    matched: list[str] = dataclasses.field(default_factory=list)
    missing: dict[str, Shape] = dataclasses.field(default_factory=dict)
    extra: dict[str, Shape] = dataclasses.field(default_factory=dict)
    mis_shaped: dict[str, tuple[Shape, Shape]] = dataclasses.field(default_factory=dict)
    skipped: dict[str, Shape] = dataclasses.field(default_factory=dict)
    cast: dict[str, str] = dataclasses.field(default_factory=dict)
    storage: dict[str, int] = dataclasses.field(default_factory=dict)
    step: int | None = None
    model_spec: str = ""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mis_shaped)

    def problems(self) -> list[str]:
        """One line per mis-shaped, missing or extra array, naming it by its t5x name."""
        lines = [f"mis-shaped array {TARGET_PREFIX}{n}: expected shape {list(e)}, found "
                 f"{list(f)}" for n, (e, f) in sorted(self.mis_shaped.items())]
        lines += [f"missing array {TARGET_PREFIX}{n} (expected shape {list(s)})"
                  for n, s in sorted(self.missing.items())]
        lines += [f"extra array {TARGET_PREFIX}{n} (shape {list(s)}) that config "
                  f"{self.config_name!r} does not have" for n, s in sorted(self.extra.items())]
        return lines

    def to_text(self) -> str:
        """A short human-readable summary (what the CLI prints)."""
        head = (f"{self.source} ({self.layout}, step {self.step}) -> config "
                f"{self.config_name!r}: {len(self.matched)} arrays imported "
                f"({', '.join(f'{v} {k}' for k, v in sorted(self.storage.items()))}), "
                f"{len(self.skipped)} optimizer-state arrays skipped")
        lines = [head] + [f"  cast {n}: {c}" for n, c in sorted(self.cast.items())]
        lines += [f"  model spec: {self.model_spec}"] if self.model_spec else []
        return "\n".join(lines + [f"  {p}" for p in self.problems()])

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ok"] = self.ok
        return json.loads(json.dumps(out, default=list))


def check_shapes(found: Mapping[str, Shape], expected: Mapping[str, Shape],
                 report: ImportReport) -> None:
    """Fills report.matched / missing / extra / mis_shaped (names without 'target.')."""
    for name, shape in sorted(expected.items()):
        if name not in found:
            report.missing[name] = shape
        elif tuple(found[name]) != tuple(shape):
            report.mis_shaped[name] = (tuple(shape), tuple(found[name]))
        else:
            report.matched.append(name)
    report.extra.update({n: tuple(s) for n, s in sorted(found.items()) if n not in expected})


def raise_unless_ok(report: ImportReport, hint: str = "") -> None:
    """Raises T5xCheckpointError listing the mis-shaped, missing and extra arrays by name."""
    if report.ok:
        return
    problems = report.problems()
    shown = "\n  ".join(problems[:12])
    more = f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else ""
    raise T5xCheckpointError(
        f"t5x checkpoint {report.source} does not fit model config {report.config_name!r} "
        f"({len(report.mis_shaped)} mis-shaped, {len(report.missing)} missing, "
        f"{len(report.extra)} extra arrays){hint}:\n  {shown}{more}")


def to_param_tree(arrays: Mapping[str, np.ndarray], expected: Mapping[str, Shape],
                  report: ImportReport, dtype: Any = np.float32) -> dict[str, Any]:
    """Our nested params (float32 numpy) from t5x `arrays` (names without 'target.')."""
    flat = {}
    for name in expected:
        array = np.asarray(arrays[name])
        if array.dtype != np.dtype(dtype):
            report.cast[name] = f"{array.dtype.name}->{np.dtype(dtype).name}"
            array = array.astype(dtype)
        flat[name] = array
    return unflatten_params(flat)
