"""Dive-number parsing and the embedded FineDiving tables."""

import pytest

from aqa.data.synth.dive_numbers import (ACTION_TABLE, ENTRY_LABEL, LEXICON, action_frequencies, label_runs,
                                         parse_dive_number)


def test_parse_known_numbers():
    d = parse_dive_number("107b")
    assert (d.direction, d.half_somersaults, d.half_twists, d.position, d.armstand) == ("forward", 7, 0, "pike", False)
    d = parse_dive_number("5253b")
    assert (d.direction, d.half_somersaults, d.half_twists, d.position) == ("back", 5, 3, "pike")
    d = parse_dive_number("6243d")
    assert (d.direction, d.armstand, d.half_somersaults, d.half_twists, d.position) == ("back", True, 4, 3, "free")
    assert parse_dive_number("407c").rotation_sign == -1 and not parse_dive_number("407c").faces_water


@pytest.mark.parametrize("bad", ["", "107", "107x", "707b", "12b", "5953b"])
def test_parse_rejects_malformed(bad):
    with pytest.raises(ValueError, match="dive number"):
        parse_dive_number(bad)


def test_table_facts():
    assert len(ACTION_TABLE) == 52
    assert sum(sum(dd.values()) for dd, _, _ in ACTION_TABLE.values()) == 3000
    assert len(LEXICON) == 42 and LEXICON[36] == "Entry"
    dds = {d for dd, _, _ in ACTION_TABLE.values() for d in dd}
    assert len(dds) == 23 and min(dds) == 1.5 and max(dds) == 4.1


def test_label_runs_follow_dive_number():
    takeoff = {"forward": 1, "back": 2, "reverse": 3, "inward": 4}
    for code in ACTION_TABLE:
        runs = label_runs(code)
        dn = parse_dive_number(code)
        assert runs[-1] == ENTRY_LABEL
        armstand = {"forward": 5, "back": 6, "reverse": 7}
        assert runs[0] == (armstand if dn.armstand else takeoff)[dn.direction], code
        twist_runs = [r for r in runs if 29 <= r <= 35 or r in (41, 42)]
        assert bool(twist_runs) == (dn.half_twists > 0), code
    assert label_runs("105c") == (1, 23, 36)  # composed for a number absent from the table


def test_armstands_stay_on_the_platform():
    assert not any(c.startswith("6") for c in action_frequencies("3m"))
    assert any(c.startswith("6") for c in action_frequencies("10m"))
