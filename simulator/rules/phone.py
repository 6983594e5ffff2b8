"""The phone rule: what an Indonesian mobile number looks like, and its one stored form.

A mobile number is ``08`` + an operator digit 1-9 + the rest, 10 to 13 digits in all with the
leading 0 (docs/domain.md). ``+62 8...`` and ``62 8...`` are the same numbers; spaces, dashes and
brackets are ignored. The API refuses what `normalize_phone` refuses (PHONE_INVALID), and the
population generator's invalid phones (`simulator.generators.contact.invalid_phones`) are drawn
from the shapes `NOT_MOBILE_SHAPES` lists, each outside this rule.
"""

from __future__ import annotations

import re

MOBILE_PREFIX = "08"
MIN_DIGITS = 10
"""Digits of the shortest mobile number, leading 0 included."""
MAX_DIGITS = 13
"""Digits of the longest mobile number, leading 0 included."""

PHONE_RE = re.compile(rf"^{MOBILE_PREFIX}[1-9][0-9]{{{MIN_DIGITS - 3},{MAX_DIGITS - 3}}}$")
"""The stored form: ``08``, an operator digit 1-9, then the subscriber digits."""

_SEPARATORS = re.compile(r"[\s\-()]")

NOT_MOBILE_SHAPES: dict[str, tuple[str, int]] = {
    # name: (leading digits, total digits) of numbers a registration form must refuse
    "too_short": ("0812", MIN_DIGITS - 2),
    "too_long": ("0812", MAX_DIGITS + 2),
    "toll_free": ("0800", 12),  # 0800: a toll-free number, the operator digit is 0
    "landline": ("0215", 11),  # 021-5xxxxxxx: a Jakarta landline
}
"""Shapes of numbers outside the rule, for generators of invalid input (each is refused)."""


def normalize_phone(text: str) -> str | None:
    """The ``08...`` form of an Indonesian mobile number (``+62 8...`` accepted), None if it is not one."""
    digits = _SEPARATORS.sub("", text)
    if digits.startswith("+62"):
        digits = "0" + digits[3:]
    elif digits.startswith("62"):
        digits = "0" + digits[2:]
    return digits if PHONE_RE.match(digits) else None


def phone_problem(text: str) -> str | None:
    """Why ``text`` is not a mobile number (one line), or None when it is one."""
    if normalize_phone(text) is not None:
        return None
    shape = f"{MOBILE_PREFIX}..., {MIN_DIGITS}-{MAX_DIGITS} digits"
    return f"{text!r} is not an Indonesian mobile number ({shape})"
