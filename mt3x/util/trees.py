"""Nested dicts <-> flat {'a<sep>b<sep>c': leaf} mappings (parameter trees by path name)."""

from __future__ import annotations

from typing import Any, Mapping

import jax


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def flatten_nested(tree: Any, separator: str) -> dict[str, Any]:
    """{'a': {'b': {'c': leaf}}} -> {'a.b.c': leaf} for separator '.' (any jax pytree).

    Raises ValueError when a key contains the separator (the names would not unflatten)."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [_key_name(k) for k in path]
        bad = [k for k in keys if separator in k]
        if bad:
            raise ValueError(f"tree key {bad[0]!r} contains the separator {separator!r}")
        flat[separator.join(keys)] = leaf
    return flat


def unflatten_nested(flat: Mapping[str, Any], separator: str) -> dict[str, Any]:
    """{'a.b.c': leaf} -> {'a': {'b': {'c': leaf}}} for separator '.'."""
    tree: dict[str, Any] = {}
    for name, leaf in flat.items():
        node = tree
        *parents, last = name.split(separator)
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = leaf
    return tree
