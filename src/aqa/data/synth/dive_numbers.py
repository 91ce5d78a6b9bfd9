"""Dive numbers (FINA notation) and the facts of the FineDiving release the sampler needs.

A dive number such as ``107b`` or ``5253b`` encodes the group (1 forward, 2 back, 3 reverse,
4 inward, 5 twisting, 6 armstand), the number of half somersaults, for twisting dives the
direction and the number of half twists, and the body position letter (a straight, b pike,
c tuck, d free). The tables below were counted from the real annotation files (3000 dives);
they are facts about the data set, embedded so that sampling needs no outside file.
"""

from __future__ import annotations

from dataclasses import dataclass

# dive number: ({DD: count}, (3 m, 10 m, MTL-AQA videos), modal label runs)
ACTION_TABLE: dict[str, tuple[dict[float, int], tuple[int, int, int], tuple[int, ...]]] = {
    '101b': ({1.5: 1, 2.0: 21}, (11, 10, 1), (1, 37, 36)),
    '103b': ({1.6: 19, 2.0: 17}, (8, 9, 19), (1, 13, 36)),
    '105b': ({2.3: 2, 2.4: 4}, (0, 0, 6), (1, 15, 36)),
    '107b': ({3.0: 206, 3.1: 118}, (85, 87, 152), (1, 17, 36)),
    '107c': ({2.7: 9, 2.8: 7}, (2, 3, 11), (1, 25, 36)),
    '109b': ({4.1: 1}, (0, 1, 0), (1, 19, 36)),
    '109c': ({3.7: 80, 3.8: 78}, (59, 45, 54), (1, 27, 36)),
    '201a': ({2.0: 1}, (1, 0, 0), (2, 37, 36)),
    '201b': ({1.8: 7, 2.0: 61}, (34, 27, 7), (2, 37, 36)),
    '201c': ({2.0: 1}, (1, 0, 0), (2, 37, 36)),
    '205b': ({2.9: 63, 3.0: 141}, (95, 25, 84), (2, 15, 36)),
    '205c': ({2.8: 16}, (3, 0, 13), (2, 23, 36)),
    '207b': ({3.6: 72}, (0, 38, 34), (2, 17, 36)),
    '207c': ({3.3: 132, 3.6: 27}, (21, 48, 90), (2, 25, 36)),
    '301b': ({1.9: 21, 2.0: 66}, (31, 37, 19), (3, 37, 36)),
    '303c': ({2.0: 1}, (1, 0, 0), (3, 21, 36)),
    '305b': ({2.8: 1, 3.0: 83}, (56, 0, 28), (3, 15, 36)),
    '305c': ({2.7: 8, 2.8: 48}, (2, 23, 31), (3, 23, 36)),
    '307c': ({3.4: 140, 3.5: 93}, (61, 66, 106), (3, 25, 36)),
    '401b': ({2.0: 36}, (21, 15, 0), (4, 37, 36)),
    '403b': ({2.0: 24}, (0, 3, 21), (4, 13, 36)),
    '405b': ({2.8: 45, 3.0: 88}, (67, 22, 44), (4, 15, 36)),
    '405c': ({2.7: 16}, (4, 0, 12), (4, 23, 36)),
    '407b': ({3.5: 6, 3.7: 1}, (1, 5, 1), (4, 17, 36)),
    '407c': ({3.2: 250, 3.4: 97}, (63, 109, 175), (4, 25, 36)),
    '409c': ({4.1: 6}, (0, 0, 6), (4, 27, 36)),
    '5132d': ({2.0: 3, 2.1: 6}, (0, 3, 6), (1, 30, 13, 36)),
    '5152b': ({2.9: 12, 3.0: 82}, (66, 3, 25), (1, 15, 30, 15, 36)),
    '5154b': ({3.3: 2, 3.4: 112}, (74, 1, 39), (1, 15, 32, 15, 36)),
    '5156b': ({3.8: 8, 3.9: 30}, (24, 3, 11), (1, 15, 34, 15, 36)),
    '5172b': ({3.6: 3}, (0, 3, 0), (1, 17, 30, 36)),
    '5231d': ({2.0: 12}, (2, 5, 5), (2, 29, 13, 36)),
    '5233d': ({2.4: 3}, (0, 0, 3), (2, 31, 13, 36)),
    '5235d': ({2.8: 7}, (0, 1, 6), (2, 33, 13, 36)),
    '5237d': ({3.3: 2}, (0, 0, 2), (2, 35, 13, 36)),
    '5251b': ({2.6: 8}, (0, 0, 8), (2, 29, 15, 36)),
    '5253b': ({3.2: 201, 3.4: 8}, (6, 96, 107), (2, 31, 15, 36)),
    '5255b': ({3.6: 79}, (0, 29, 50), (2, 33, 15, 36)),
    '5331d': ({2.0: 2, 2.1: 2}, (2, 0, 2), (3, 29, 13, 36)),
    '5335d': ({2.9: 2}, (0, 0, 2), (3, 33, 13, 36)),
    '5337d': ({3.4: 3, 3.5: 20}, (20, 0, 3), (3, 35, 13, 36)),
    '5353b': ({3.3: 31}, (10, 0, 21), (3, 31, 15, 36)),
    '5355b': ({3.7: 3}, (0, 0, 3), (3, 33, 15, 36)),
    '612b': ({1.9: 5}, (0, 0, 5), (5, 12, 35)),
    '6142d': ({3.1: 10}, (0, 0, 10), (5, 30, 14, 35)),
    '614b': ({2.4: 3}, (0, 0, 3), (5, 14, 35)),
    '6241b': ({2.7: 5}, (0, 0, 5), (6, 29, 14, 36)),
    '6243d': ({3.2: 107}, (0, 43, 64), (6, 31, 14, 36)),
    '6245d': ({3.6: 32}, (0, 10, 22), (6, 33, 14, 36)),
    '626b': ({3.5: 25}, (0, 12, 13), (6, 16, 36)),
    '626c': ({3.3: 53}, (0, 18, 35), (6, 24, 36)),
    '636c': ({3.4: 5}, (0, 0, 5), (7, 24, 36)),
}
LEXICON: dict[int, str] = {
    1: 'Forward', 2: 'Back', 3: 'Reverse', 4: 'Inward',
    5: 'Arm.Forward', 6: 'Arm.Back', 7: 'Arm.Reverse', 8: '1 Som.Straight',
    9: '1.5 Soms.Straight', 10: '2 Soms.Straight', 11: '2.5 Soms.Straight', 12: '1 Som.Pike',
    13: '1.5 Soms.Pike', 14: '2 Soms.Pike', 15: '2.5 Soms.Pike', 16: '3 Soms.Pike',
    17: '3.5 Soms.Pike', 18: '4 Soms.Pike', 19: '4.5 Soms.Pike', 20: '1 Som.Tuck',
    21: '1.5 Soms.Tuck', 22: '2 Soms.Tuck', 23: '2.5 Soms.Tuck', 24: '3 Soms.Tuck',
    25: '3.5 Soms.Tuck', 26: '4 Soms.Tuck', 27: '4.5 Soms.Tuck', 28: '5.5 Soms.Tuck',
    29: '0.5 Twist', 30: '1 Twist', 31: '1.5 Twists', 32: '2 Twists',
    33: '2.5 Twists', 34: '3 Twists', 35: '3.5 Twists', 36: 'Entry',
    37: '0.5 Som.Pike', 38: 'Background', 39: '0.5 Som.Straight', 40: '0.5 Som.Tuck',
    41: '4 Twists', 42: '4.5 Twists',
}

ENTRY_LABEL = 36
TAKEOFF_LABELS = {1, 2, 3, 4, 5, 6, 7}
TWIST_LABELS = {29, 30, 31, 32, 33, 34, 35, 41, 42}
DIRECTIONS = {1: "forward", 2: "back", 3: "reverse", 4: "inward"}
POSITIONS = {"a": "straight", "b": "pike", "c": "tuck", "d": "free"}


@dataclass(frozen=True)
class DiveNumber:
    code: str
    direction: str  # forward | back | reverse | inward
    armstand: bool
    half_somersaults: int
    half_twists: int
    position: str  # straight | pike | tuck | free

    @property
    def somersaults(self) -> float:
        return self.half_somersaults / 2

    @property
    def twists(self) -> float:
        return self.half_twists / 2

    @property
    def head_first(self) -> bool:
        """Entry orientation: armstand dives start inverted, the others upright."""
        return (self.half_somersaults + int(self.armstand)) % 2 == 1

    @property
    def rotation_sign(self) -> int:
        """+1 when the head travels away from the board (forward, back), -1 towards it."""
        return 1 if self.direction in ("forward", "back") else -1

    @property
    def faces_water(self) -> bool:
        """Forward and reverse take-offs face the water; back and inward face the board."""
        return self.direction in ("forward", "reverse")


def parse_dive_number(code: str) -> DiveNumber:
    """Parse a FINA dive number; raise ValueError naming the code when it is malformed."""
    code = str(code).strip()
    digits, letter = code[:-1], code[-1:].lower()
    if letter not in POSITIONS or not digits.isdigit() or len(digits) not in (3, 4):
        raise ValueError(f"not a dive number: {code!r} (expected 3-4 digits and a position a-d)")
    group = int(digits[0])
    if group in (1, 2, 3, 4):
        if len(digits) != 3:
            raise ValueError(f"not a dive number: {code!r} (groups 1-4 have three digits)")
        direction, armstand, half_twists = DIRECTIONS[group], False, 0
    elif group == 5:
        if len(digits) != 4 or int(digits[1]) not in DIRECTIONS:
            raise ValueError(f"not a dive number: {code!r} (twisting dives are 5 + direction + 2 digits)")
        direction, armstand, half_twists = DIRECTIONS[int(digits[1])], False, int(digits[3])
    elif group == 6:
        if int(digits[1]) not in (1, 2, 3):
            raise ValueError(f"not a dive number: {code!r} (armstand direction must be 1-3)")
        direction, armstand = DIRECTIONS[int(digits[1])], True
        half_twists = int(digits[3]) if len(digits) == 4 else 0
    else:
        raise ValueError(f"not a dive number: {code!r} (group must be 1-6)")
    return DiveNumber(code, direction, armstand, int(digits[2]), half_twists, POSITIONS[letter])


def label_runs(code: str) -> tuple[int, ...]:
    """The sequence of sub-action labels of a dive (one entry per run of equal frames).

    Known dive numbers use the most frequent sequence of the real data. The armstand types'
    modal sequence ends with 35 (3.5 Twists) instead of Entry in the release, an annotation
    slip; the synthetic data always ends with Entry (36). Unknown numbers are composed from
    the lexicon: take-off, somersault (split around the twist for twisting dives), Entry.
    """
    if code in ACTION_TABLE:
        runs = list(ACTION_TABLE[code][2])
        runs[-1] = ENTRY_LABEL
        return tuple(runs)
    dn = parse_dive_number(code)
    takeoff = {"forward": 1, "back": 2, "reverse": 3, "inward": 4}[dn.direction]
    if dn.armstand:
        takeoff = {"forward": 5, "back": 6, "reverse": 7}[dn.direction]
    som = _somersault_label(dn.half_somersaults, dn.position)
    if dn.half_twists == 0:
        return (takeoff, som, ENTRY_LABEL)
    return (takeoff, _twist_label(dn.half_twists), som, ENTRY_LABEL)


def _name_to_id() -> dict[str, int]:
    return {v: k for k, v in LEXICON.items()}


def _somersault_label(half: int, position: str) -> int:
    pos = {"straight": "Straight", "pike": "Pike", "tuck": "Tuck", "free": "Pike"}[position]
    count = half / 2
    text = f"{count:g} Som.{pos}" if count <= 1 else f"{count:g} Soms.{pos}"
    names = _name_to_id()
    return names.get(text, names[f"{min(max(count, 1), 4.5):g} Som{'s' if count > 1 else ''}.Pike"])


def _twist_label(half: int) -> int:
    count = half / 2
    text = f"{count:g} Twist" if count <= 1 else f"{count:g} Twists"
    return _name_to_id().get(text, 35)


def action_frequencies(board: str) -> dict[str, float]:
    """Sampling weight of each dive number on a board ('3m' or '10m').

    The counts of the named competitions on that board, plus half the MTL-AQA count for types
    seen on that board or never seen on a named board (armstand dives stay on the platform).
    """
    col = {"3m": 0, "10m": 1}[board]
    weights = {}
    for code, (_, counts, _) in ACTION_TABLE.items():
        named_here, named_other, mtl = counts[col], counts[1 - col], counts[2]
        if code.startswith("6") and board == "3m":
            continue
        w = named_here + (0.5 * mtl if named_here or not named_other else 0.0)
        if w > 0:
            weights[code] = float(w)
    return weights


def difficulty_choices(code: str) -> dict[float, int]:
    """The DD values seen for a dive number and how often."""
    if code not in ACTION_TABLE:
        raise KeyError(f"dive number {code!r} is not in the FineDiving table")
    return dict(ACTION_TABLE[code][0])
