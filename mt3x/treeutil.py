"""Nested dicts <-> flat {'a<sep>b<sep>c': leaf} mappings (parameter trees by path name)."""

from __future__ import annotations

from typing import Any, Mapping


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
