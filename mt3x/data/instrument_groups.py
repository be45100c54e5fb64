"""Instrument groups: which stems of a track form one instrument, and the one spec syntax for them.

`mt3x-separate --instruments`, the separation gin macro `INSTRUMENTS` and `mt3x-tag train
--grouping` all read this syntax with `parse_groups`:

    piano=0-7;guitar=24-31|class:Guitar;bass=32-39;drums
    piano,guitar,bass,drums                        (the same shorthands, comma-separated)
    4stem                                          (preset: bass=32-39;drums;guitar=24-31;piano=0-7)

Groups are separated by `;` or `,`. A group is `name=selector|selector...` or a bare name:

- `N` or `A-B`: General MIDI programs (0-based, inclusive) of pitched (non-drum) stems;
- `drums`: every drum stem;
- `class:Name`: stems whose Slakh `inst_class` is Name (case-insensitive, e.g. `class:Strings`);
- `stem:S00`: the stem of that name;
- `*`: every stem that no other group takes (e.g. `other=*`).

A bare name is a shorthand: `drums` is `drums=drums`, and a GM family in lower case with `_` for
spaces (`piano`, `organ`, `guitar`, `bass`, `strings`, `brass`, `reed`, `pipe`, `synth_lead`,
`synth_pad`, `chromatic_percussion`, ...) is `name=` that family's eight programs (`piano=0-7`).
A stem belongs to the first group that matches it; `*` groups take only what no other group
matched; a stem that no group takes belongs to none (separation sums it into its residual
'other').
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Protocol, Sequence

from mt3x.data.instruments import GM_FAMILIES
from mt3x.errors import Mt3xError


class GroupSpecError(Mt3xError):
    """An instrument group spec that does not parse (the message names the bad part)."""


class StemLike(Protocol):
    """What a group looks at (e.g. `mt3x.data.slakh.SlakhStem`)."""

    name: str
    program: int
    is_drum: bool
    inst_class: str


@dataclasses.dataclass(frozen=True)
class InstrumentGroup:
    """One instrument: the stems matching any of the selectors are summed into it.

    Attributes:
      name: the instrument's name (e.g. 'bass').
      programs: 0-based GM programs matched on pitched (non-drum) stems.
      classes: Slakh `inst_class` values, case-insensitive.
      stem_names: stem names such as 'S00'.
      drums: match every drum stem.
      rest: match every stem no other group matches (`*`).
    """
    name: str
    programs: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    stem_names: tuple[str, ...] = ()
    drums: bool = False
    rest: bool = False

    def matches(self, stem: StemLike) -> bool:
        """Whether a selector other than `*` takes `stem`."""
        if stem.name in self.stem_names:
            return True
        if stem.is_drum:
            return self.drums
        return (stem.program in self.programs
                or stem.inst_class.lower() in {c.lower() for c in self.classes})


def group_index(stem: StemLike, groups: Sequence[InstrumentGroup]) -> int | None:
    """Index of the group `stem` belongs to: the first that matches, else the first `*` group,
    else None."""
    for i, group in enumerate(groups):
        if group.matches(stem):
            return i
    return next((i for i, group in enumerate(groups) if group.rest), None)


def _family_key(family: str) -> str:
    return family.lower().replace(" ", "_")


#: Bare names and what they stand for.
SHORTHANDS: dict[str, str] = {
    "drums": "drums",
    **{_family_key(f): f"{8 * i}-{8 * i + 7}" for i, f in enumerate(GM_FAMILIES) if "(" not in f},
}
PRESETS: dict[str, str] = {"4stem": "bass=32-39;drums;guitar=24-31;piano=0-7"}
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
SYNTAX = ("name=selector[|selector...] groups separated by ';' or ','; selectors: N or A-B "
          "(GM programs 0-127), drums, class:Name, stem:SXX, * (the rest); a bare name such as "
          f"piano or drums; or a preset {sorted(PRESETS)}")


def parse_groups(spec: str) -> tuple[InstrumentGroup, ...]:
    """An instrument group spec (see the module docstring) -> groups, in the spec's order.

    Raises:
      GroupSpecError: naming the part that does not parse, and the syntax.
    """
    text = str(spec).strip()
    text = PRESETS.get(text, text)
    groups = [_parse_group(part, spec) for part in filter(None, (
        p.strip() for p in re.split(r"[;,]", text)))]
    names = [g.name for g in groups]
    if not groups:
        raise GroupSpecError(f"instrument spec {spec!r}: no groups; expected {SYNTAX}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GroupSpecError(f"instrument spec {spec!r}: group names must be unique, "
                             f"{duplicates} repeat")
    return tuple(groups)


def _parse_group(part: str, spec: str) -> InstrumentGroup:
    name, sep, selectors = (s.strip() for s in part.partition("="))
    if not sep:
        if name.lower() not in SHORTHANDS:
            raise GroupSpecError(
                f"instrument spec {spec!r}: {part!r} is neither name=selector nor a known "
                f"instrument ({', '.join(sorted(SHORTHANDS))}); expected {SYNTAX}")
        selectors = SHORTHANDS[name.lower()]
    if not _NAME.match(name) or not selectors:
        raise GroupSpecError(f"instrument spec {spec!r}: {part!r}: expected a name of letters, "
                             f"digits, '_', '.', '+' or '-' and at least one selector; {SYNTAX}")
    programs: list[int] = []
    classes: list[str] = []
    stems: list[str] = []
    drums = rest = False
    for sel in (s.strip() for s in selectors.split("|")):
        if sel == "drums":
            drums = True
        elif sel == "*":
            rest = True
        elif sel.startswith("class:") and sel[len("class:"):].strip():
            classes.append(sel[len("class:"):].strip())
        elif sel.startswith("stem:") and sel[len("stem:"):].strip():
            stems.append(sel[len("stem:"):].strip())
        else:
            programs.extend(_programs(sel, part, spec))
    return InstrumentGroup(name, tuple(programs), tuple(classes), tuple(stems), drums, rest)


def _programs(sel: str, part: str, spec: str) -> range:
    match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", sel)
    if match is None:
        raise GroupSpecError(
            f"instrument spec {spec!r}: in {part!r}, selector {sel!r} is not a program (N or "
            "A-B, 0-127), 'drums', 'class:Name', 'stem:SXX' or '*'")
    lo = int(match[1])
    hi = int(match[2]) if match[2] is not None else lo
    if not 0 <= lo <= hi <= 127:
        raise GroupSpecError(f"instrument spec {spec!r}: in {part!r}, programs {sel!r} are not "
                             "an ascending range within 0-127 (0-based General MIDI)")
    return range(lo, hi + 1)


def format_groups(groups: Sequence[InstrumentGroup | str]) -> str:
    """Groups as a spec string that `parse_groups` reads back (names alone pass through)."""
    return ";".join(g if isinstance(g, str) else f"{g.name}={'|'.join(_selectors(g))}"
                    for g in groups)


def _selectors(group: InstrumentGroup) -> list[str]:
    out: list[str] = []
    for p in sorted(set(group.programs)):
        if out and int(out[-1].split("-")[-1]) == p - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    out += [f"class:{c}" for c in group.classes] + [f"stem:{s}" for s in group.stem_names]
    return out + ["drums"] * group.drums + ["*"] * group.rest


def groups_to_json(groups: Sequence[InstrumentGroup]) -> list[dict[str, Any]]:
    """Groups as JSON-able dicts (separator.json, bundle.json, the tagger's manifest)."""
    return [dataclasses.asdict(group) for group in groups]


def groups_from_json(entries: Sequence[Mapping[str, Any]] | None
                     ) -> tuple[InstrumentGroup, ...] | None:
    """Inverse of `groups_to_json` (None stays None; fields missing in older files default)."""
    if entries is None:
        return None
    return tuple(InstrumentGroup(str(g["name"]), tuple(g.get("programs", ())),
                                 tuple(g.get("classes", ())), tuple(g.get("stem_names", ())),
                                 bool(g.get("drums", False)), bool(g.get("rest", False)))
                 for g in entries)
