"""The `--config` of `mt3x-import-t5x`: a named config, 'auto', or explicit sizes.

```
parse_config_option('auto' | 'mt3' | 'heads=2' | 'tiny,heads=4' |
                    'emb=512,heads=8,head_dim=64,mlp=1024,enc_layers=8,dec_layers=8,vocab=1536')
    -> ConfigRequest(base, sizes)
head_count_hints(src, shapes) -> HeadHints       # from t5x's config.gin or a relpos table
resolve_config(request, shapes, src) -> (name, T5Config)
```
Shapes cannot tell how an attention width splits into heads: MT3's query kernels are stored
joined, `[emb, heads * head_dim]`, and MT3 has no relative-position table (fixed sinusoids).
`auto` therefore takes the head count from, in order: the sizes given with `--config`, the
`config.gin` t5x writes into its model directory (`T5Config.num_heads` / `head_dim`), a
relative-position table `[heads, buckets]` (t5x's layout), and otherwise refuses to guess.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

from mt3x.models import CONFIGS, T5Config
from mt3x.t5x_checkpoint.errors import T5xCheckpointError
from mt3x.t5x_checkpoint.mapping import infer_config

Shape = tuple[int, ...]
#: Short names accepted by --config, and the T5Config field each sets (full names work too).
SIZE_KEYS = {"vocab": "vocab_size", "emb": "emb_dim", "heads": "num_heads",
             "head_dim": "head_dim", "mlp": "mlp_dim", "enc_layers": "num_encoder_layers",
             "dec_layers": "num_decoder_layers", "input_depth": "input_depth"}
CONFIG_GIN = "config.gin"
_GIN_VALUE = re.compile(r"^\s*(?:[\w.]*T5Config\.)?(num_heads|head_dim)\s*=\s*(\d+)\s*(?:#.*)?$",
                        re.MULTILINE)
_RELPOS_SUFFIX = "relpos_bias.rel_embedding"
_QUERY = "encoder.layers_0.attention.query.kernel"


@dataclasses.dataclass(frozen=True)
class ConfigRequest:
    """A parsed --config: `base` is 'auto' or a name of `mt3x.models.CONFIGS`; `sizes` maps
    T5Config fields (num_heads, emb_dim, ...) to the values given explicitly."""

    base: str = "auto"
    sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class HeadHints:
    """Head count / width found beside a checkpoint, and where (for the report and errors)."""

    num_heads: int | None = None
    head_dim: int | None = None
    source: str = ""


def config_syntax() -> str:
    """One line describing the accepted --config forms (for help and errors)."""
    return (f"'auto', a config name ({', '.join(sorted(CONFIGS))}), or comma-separated "
            f"key=value sizes, optionally after 'auto' or a name (keys: "
            f"{', '.join(SIZE_KEYS)}), e.g. 'heads=8' or 'emb=512,heads=8,head_dim=64,mlp=1024,"
            "enc_layers=8,dec_layers=8,vocab=1536'")


def parse_config_option(text: str) -> ConfigRequest:
    """Parses --config (see `config_syntax`).

    Raises:
      T5xCheckpointError: an unknown name or key, a repeated key, or a size that is not a
        positive integer (the message quotes the item and the accepted syntax).
    """
    items = [item.strip() for item in str(text).split(",")]
    if not items or any(not item for item in items):
        raise T5xCheckpointError(f"--config {text!r}: empty item; expected {config_syntax()}")
    base = "auto"
    if "=" not in items[0]:
        base = items.pop(0)
        if base != "auto" and base not in CONFIGS:
            raise T5xCheckpointError(f"--config {text!r}: unknown config {base!r}; expected "
                                     f"{config_syntax()}")
    fields = set(SIZE_KEYS.values())
    sizes: dict[str, int] = {}
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            raise T5xCheckpointError(f"--config {text!r}: {item!r} is not key=value (a config "
                                     f"name may only come first); expected {config_syntax()}")
        field = SIZE_KEYS.get(key, key if key in fields else None)
        if field is None:
            raise T5xCheckpointError(f"--config {text!r}: unknown size {key!r}; expected one of "
                                     f"{', '.join(SIZE_KEYS)}")
        if field in sizes:
            raise T5xCheckpointError(f"--config {text!r}: {key!r} is given twice")
        if not value.isdigit() or int(value) <= 0:
            raise T5xCheckpointError(f"--config {text!r}: {key}={value!r} is not a positive "
                                     "integer")
        sizes[field] = int(value)
    return ConfigRequest(base=base, sizes=sizes)


def _gin_hints(src: Path) -> HeadHints:
    """num_heads / head_dim from the nearest t5x `config.gin` (src and up to two parents)."""
    for folder in [src, *list(src.parents)[:2]]:
        gin = folder / CONFIG_GIN
        if not gin.is_file():
            continue
        try:
            text = gin.read_text(errors="replace")
        except OSError as err:
            raise T5xCheckpointError(f"{gin}: cannot read it: {err}") from err
        found: dict[str, set[int]] = {}
        for key, value in _GIN_VALUE.findall(text):
            found.setdefault(key, set()).add(int(value))
        if any(len(values) > 1 for values in found.values()):
            raise T5xCheckpointError(f"{gin}: conflicting head sizes {found}; pass --config "
                                     "heads=N")
        if found:
            return HeadHints(num_heads=next(iter(found.get("num_heads", {None}))),
                             head_dim=next(iter(found.get("head_dim", {None}))),
                             source=str(gin))
    return HeadHints()


def head_count_hints(src: str | Path, shapes: Mapping[str, Shape]) -> HeadHints:
    """The head count (and width) a checkpoint's surroundings tell; empty when nothing does.

    `shapes` are the checkpoint's parameter shapes (dotted names without 'target.').
    """
    gin = _gin_hints(Path(src).absolute())
    if gin.num_heads or gin.head_dim:
        return gin
    tables = {n: s for n, s in shapes.items() if n.endswith(_RELPOS_SUFFIX) and len(s) == 2}
    heads = {s[0] for s in tables.values()}
    if len(heads) == 1:
        return HeadHints(num_heads=heads.pop(), source=f"{sorted(tables)[0]} [heads, buckets]")
    return HeadHints()


def _split_heads(joined: int, given: Mapping[str, int], source: str) -> dict[str, int]:
    """{'num_heads', 'head_dim'} from one or both of them, checked against the query width."""
    heads, width = given.get("num_heads"), given.get("head_dim")
    heads = heads if heads is not None else joined // width  # type: ignore[operator]
    width = width if width is not None else joined // heads
    if heads <= 0 or width <= 0 or heads * width != joined:
        raise T5xCheckpointError(
            f"{source}: {heads} heads x head_dim {width} does not match the checkpoint's "
            f"attention width {joined} (query kernels are [emb, heads * head_dim])")
    return {"num_heads": heads, "head_dim": width}


def resolve_config(request: ConfigRequest, shapes: Mapping[str, Shape],
                   src: str | Path) -> tuple[str, T5Config]:
    """(name, config) for a checkpoint's parameter `shapes` under --config `request`.

    A named base is that config with the given sizes replaced ('<name>+custom'). 'auto' takes
    the head split from the sizes given, else from `head_count_hints`; then a named config with
    that split (or any split, when nothing tells it) whose every shape matches, else the sizes
    read from the shapes ('inferred'); sizes given replace the inferred ones ('custom').

    Raises:
      T5xCheckpointError: nothing tells the head split and no named config fits, or a head
        split that does not divide the attention width (the message says where it came from).
    """
    sizes = dict(request.sizes)
    if request.base != "auto":
        config = CONFIGS[request.base]
        if not sizes:
            return request.base, config
        return f"{request.base}+custom", dataclasses.replace(config, **sizes)
    given = {k: sizes[k] for k in ("num_heads", "head_dim") if k in sizes}
    source = "--config"
    if not given:
        hints = head_count_hints(src, shapes)
        given = {k: v for k, v in (("num_heads", hints.num_heads), ("head_dim", hints.head_dim))
                 if v is not None}
        source = hints.source
    if given and _QUERY in shapes:
        given = _split_heads(shapes[_QUERY][1], given, source)
    name, config = infer_config(shapes, **given)
    if sizes:
        return "custom", dataclasses.replace(config, **{**given, **sizes})
    return name, config
