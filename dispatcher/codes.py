"""Short codes ("K7") that tell one of a person's open calls or tasks from the others.

A responder with two warnings at once answers one of them with `1 K7`; an assignee with two
door-knock tasks finishes one with `完成 K7`. A code only has to be unique among the
person's *open* calls (or tasks), so two characters do: a letter and a digit, leaving out
the ones that read alike (I/1, O/0, Z/2, S/5...). Codes are compared upper-cased.
"""

from __future__ import annotations

from collections.abc import Iterable

LETTERS = "ABCDEFGHJKLMNPQRTUVWXY"
DIGITS = "346789"
ALL_CODES = [letter + digit for letter in LETTERS for digit in DIGITS]


def pick_code(seed: int, taken: Iterable[str | None]) -> str:
    """A code not in `taken`, starting from a place chosen by `seed` (e.g. the row id)."""
    # a set is taken as it is: a big warning picks 100,000 codes, mostly against nothing
    used = taken if isinstance(taken, set | frozenset) else {code for code in taken if code}
    for offset in range(len(ALL_CODES)):
        code = ALL_CODES[(seed * 7 + offset) % len(ALL_CODES)]
        if code not in used:
            return code
    # More open items than codes (over a hundred at once): fall back to the id itself.
    return f"N{seed}"


def looks_like_code(token: str) -> bool:
    token = token.upper()
    return token in ALL_CODES_SET or (token[:1] == "N" and token[1:].isdigit())


ALL_CODES_SET = frozenset(ALL_CODES)
