"""The one instrument group syntax of mt3x-separate, the separation gin files and mt3x-tag."""

from __future__ import annotations

import pytest

from mt3x.data.instrument_groups import (GroupSpecError, InstrumentGroup, format_groups,
                                         group_index, groups_from_json, groups_to_json,
                                         parse_groups)
from mt3x.data.slakh import SlakhStem


def _stem(name="S00", program=0, is_drum=False, inst_class="Piano"):
    return SlakhStem(name, program, is_drum, inst_class, "", True, None, None)


def test_selectors_shorthands_and_separators():
    groups = parse_groups("low=32-39|class:Strings; kit=drums; lead=stem:S01|0; rest=*")
    assert [g.name for g in groups] == ["low", "kit", "lead", "rest"]
    assert groups[0] == InstrumentGroup("low", tuple(range(32, 40)), ("Strings",))
    assert groups[1].drums and groups[2].stem_names == ("S01",) and groups[2].programs == (0,)
    assert groups[3].rest
    # bare names: GM families (lower case, '_' for spaces) and drums; ',' separates like ';'
    assert parse_groups("piano,guitar;drums, synth_lead") == parse_groups(
        "piano=0-7;guitar=24-31;drums=drums;synth_lead=80-87")
    assert parse_groups("Bass") == (InstrumentGroup("Bass", tuple(range(32, 40))),)
    assert [g.name for g in parse_groups("4stem")] == ["bass", "drums", "guitar", "piano"]
    assert parse_groups("x = 3 - 5") == (InstrumentGroup("x", (3, 4, 5)),)


def test_a_stem_goes_to_the_first_match_and_rest_only_takes_the_unmatched():
    groups = parse_groups("other=*;keys=0-7|class:Organ;kit=drums;also_piano=0-3;solo=stem:S09")
    index = [group_index(s, groups) for s in (
        _stem(program=2), _stem(program=17, inst_class="Organ"), _stem(is_drum=True),
        _stem(program=40, inst_class="Strings"), _stem("S09", program=2))]
    # piano goes to keys, not the earlier '*' nor the later also_piano; a stem named by
    # stem: wins only when no earlier group takes it
    assert index == [1, 1, 2, 0, 1]
    assert group_index(_stem(program=40), parse_groups("keys=0-7")) is None
    # drum stems match only 'drums' (or their stem name), never a program or a class
    assert group_index(_stem(is_drum=True, program=0, inst_class="Drums"),
                       parse_groups("piano=0|class:Drums")) is None


@pytest.mark.parametrize("spec", [
    "piano=0-7;guitar=24-31|class:Guitar;bass=32-39;drums", "lead=stem:S01|3|5-9;rest=*",
    "4stem"])
def test_format_and_json_round_trip(spec):
    groups = parse_groups(spec)
    assert parse_groups(format_groups(groups)) == groups
    assert groups_from_json(groups_to_json(groups)) == groups
    # files written before the 'rest' field read back with rest=False
    old = [{k: v for k, v in entry.items() if k != "rest"} for entry in groups_to_json(groups)]
    assert [g.rest for g in groups_from_json(old)] == [False] * len(groups)


@pytest.mark.parametrize("spec, message", [
    ("", "no groups"),
    (" ; ", "no groups"),
    ("violin", r"'violin' is neither name=selector nor a known instrument \(bass, "),
    ("a=1;a=2", r"names must be unique, \['a'\] repeat"),
    ("a=x-y", r"in 'a=x-y', selector 'x-y' is not a program \(N or A-B, 0-127\)"),
    ("a=200", r"programs '200' are not an ascending range within 0-127"),
    ("a=9-3", r"programs '9-3' are not an ascending range"),
    ("a=", "at least one selector"),
    ("my piano=0-7", "expected a name of letters"),
    ("a=class:", r"selector 'class:' is not a program"),
])
def test_bad_specs_name_the_part_and_the_syntax(spec, message):
    with pytest.raises(GroupSpecError, match=message) as info:
        parse_groups(spec)
    assert repr(spec) in str(info.value)


def test_mt3x_tag_refuses_a_bad_grouping_with_the_shared_message(tmp_path, capsys):
    from tagging import cli as tag_cli

    (tmp_path / "data").mkdir()
    assert tag_cli.main(["train", "--data", str(tmp_path / "data"), "--out",
                         str(tmp_path / "out"), "--grouping", "piano;violin"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: instrument spec 'piano;violin': 'violin' is neither "
                          "name=selector nor a known instrument")
    assert "or 'inst_class'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
