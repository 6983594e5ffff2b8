"""Email addresses, mobile numbers and passwords, unique across a whole population by construction.

Uniqueness needs no global set: each person's global index goes through a keyed bijection
(a small Feistel network) and the result is written into the email's digit tail and the phone's
subscriber number, so two people can never share them, in any shard.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.generators.columns import choice, digits, digits_varwidth, join, take
from simulator.rules.email import TYPO_DOMAINS  # the rule lives with the other rules
from simulator.rules.phone import NOT_MOBILE_SHAPES

# Operators' share of Indonesian mobile subscriptions, 2020 (operators' annual reports:
# Telkomsel ~170M, Indosat ~60M, XL Axiata ~58M, Hutchison Tri ~40M, Smartfren ~30M; rounded),
# and their 08xx prefixes (libphonenumber's carrier table, see docs/domain.md).
OPERATOR_SHARES: dict[str, float] = {
    "Telkomsel": 0.47,
    "Indosat": 0.17,
    "XL": 0.16,
    "Tri": 0.11,
    "Smartfren": 0.09,
}
OPERATOR_PREFIXES: dict[str, tuple[int, ...]] = {
    "Telkomsel": (811, 812, 813, 821, 822, 823, 851, 852, 853),
    "Indosat": (814, 815, 816, 855, 856, 857, 858),
    "XL": (817, 818, 819, 859, 877, 878, 879, 831, 832, 833, 838),  # Axis is part of XL
    "Tri": (895, 896, 897, 898, 899),
    "Smartfren": (881, 882, 883, 887, 888, 889),
}
# Digits of the whole number with its leading 0: 0812-3456-7890 is 12; older numbers are 11.
PHONE_LENGTH_SHARES: dict[int, float] = {11: 0.12, 12: 0.68, 13: 0.20}

# Email providers people in Indonesia sign up with (an assumption: Gmail dominates, Yahoo second).
EMAIL_PROVIDERS: dict[str, float] = {
    "gmail.com": 0.82,
    "yahoo.com": 0.07,
    "yahoo.co.id": 0.035,
    "ymail.com": 0.01,
    "hotmail.com": 0.02,
    "outlook.com": 0.02,
    "icloud.com": 0.01,
    "rocketmail.com": 0.005,
    "live.com": 0.01,
}
# How a local part is made from the name: first.last, firstlast, first_last, first, initial+last,
# last.first. Shares are an assumption.
EMAIL_PATTERNS: dict[str, float] = {
    "first.last": 0.30,
    "firstlast": 0.24,
    "first_last": 0.06,
    "first": 0.22,
    "flast": 0.10,
    "last.first": 0.08,
}
_TAIL_SEPARATORS = ("", "", "", ".", "_")  # between the name part and the digits


def _round(x: np.ndarray, key: int, half: int) -> np.ndarray:
    # 32-bit arithmetic that wraps: the low 32 bits of the products, without masks.
    mixed = x.astype(np.uint32) * np.uint32(0x2545F491) + np.uint32(key & 0xFFFFFFFF)
    mixed ^= mixed >> np.uint32(13)
    mixed *= np.uint32(0x9E3779B1)
    mixed ^= mixed >> np.uint32(16)
    return (mixed % np.uint32(half)).astype(np.int64)


def feistel(index: np.ndarray, digits_: int, keys: tuple[int, ...]) -> np.ndarray:
    """A keyed bijection of [0, 10**digits_) onto itself (``digits_`` even)."""
    half = 10 ** (digits_ // 2)
    x = np.asarray(index, dtype=np.int64)
    if (x >= half * half).any() or (x < 0).any():
        raise ValueError(f"index out of the permutation's domain [0, 10^{digits_})")
    left, right = x // half, x % half
    for key in keys:
        left, right = right, (left + _round(right, key, half)) % half
    return left * half + right


def feistel_keys(rng: np.random.Generator, rounds: int = 4) -> tuple[int, ...]:
    return tuple(int(k) for k in rng.integers(1, 2**31, rounds))


def email_tail_digits(size: int) -> int:
    """Digits of the unique number in an email for a population of ``size`` (even, at least 4)."""
    d = 4
    while 10**d < size:
        d += 2
    return d


@functools.cache
def _word_tables(email_forms: tuple[str, ...]) -> tuple[pa.Array, pa.Array]:
    """Per name word: its email forms followed by its initials; and its password form ("Budi")."""
    forms = pa.array(list(email_forms) + [w[:1] for w in email_forms], type=pa.string())
    passwords = pa.array([w[:10].capitalize() for w in email_forms], type=pa.string())
    return forms, passwords


def draw_emails(
    rng: np.random.Generator,
    global_index: np.ndarray,
    size: int,
    keys: tuple[int, ...],
    given_word: np.ndarray,
    family_word: np.ndarray,
    email_forms: np.ndarray,
    typo: np.ndarray | None = None,
) -> pa.Array:
    """Emails made from the name plus a digit tail unique to the person (bijective in the index)."""
    n = len(global_index)
    words, _ = _word_tables(tuple(email_forms))
    initials = len(email_forms)  # words[initials + i] is the initial of word i
    has_last = family_word > 0
    pattern = choice(rng, n, EMAIL_PATTERNS)
    pattern = np.where(has_last, pattern, 3)  # no family name: "first" + digits
    # Patterns as (head word, separator, tail word): first.last, firstlast, first_last, first,
    # flast (initial + last), last.first.
    head = np.select([pattern == 4, pattern == 5], [initials + given_word, family_word], default=given_word)
    tail_word = np.select([pattern == 3, pattern == 5], [0, given_word], default=family_word)  # 0: ""
    # The name part never ends in a digit and the tail is the person's own number: unique.
    number = feistel(global_index, email_tail_digits(size), keys)
    separator = rng.integers(0, len(_TAIL_SEPARATORS), n)
    provider = take(_at_domains(tuple(EMAIL_PROVIDERS)), choice(rng, n, EMAIL_PROVIDERS))
    if typo is not None and typo.any():
        typo_domain = take(_at_domains(TYPO_DOMAINS), rng.integers(0, len(TYPO_DOMAINS), n))
        provider = pc.if_else(pa.array(typo), typo_domain, provider)
    # middle + tail word + separator come from one table (fewer parts to join, same text).
    middles, separators, table = _middle_tail_separator(tuple(email_forms))
    rest = (separators[separator] * len(_MIDDLE_TEXTS) + middles[pattern]) * len(words) + tail_word
    return join([take(words, head), take(table, rest), pa.array(number).cast(pa.string()), provider])


# Between the head and tail words, by pattern: first.last, firstlast, first_last, first, flast, last.first.
_MIDDLES = (".", "", "_", "", "", ".")
_MIDDLE_TEXTS = tuple(dict.fromkeys(_MIDDLES))


@functools.cache
def _at_domains(domains: tuple[str, ...]) -> pa.Array:
    return pa.array(["@" + d for d in domains], type=pa.string())


@functools.cache
def _middle_tail_separator(email_forms: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Every (separator, middle, tail word) text, and the codes of the pattern's middle and the tail
    separator: entry ``(sep * len(middles) + middle) * len(words) + word`` is middle + word + sep."""
    words = _word_tables(email_forms)[0].to_pylist()
    separators_text = tuple(dict.fromkeys(_TAIL_SEPARATORS))
    table = [m + w + s for s in separators_text for m in _MIDDLE_TEXTS for w in words]
    middles = np.array([_MIDDLE_TEXTS.index(m) for m in _MIDDLES], dtype=np.int64)
    separators = np.array([separators_text.index(s) for s in _TAIL_SEPARATORS], dtype=np.int64)
    return middles, separators, pa.array(table, type=pa.string())


def draw_phones(rng: np.random.Generator, global_index: np.ndarray, keys: tuple[int, ...]) -> pa.Array:
    """08xx mobile numbers: operator prefix by market share, subscriber number unique to the person."""
    n = len(global_index)
    subscriber = feistel(global_index, 8, keys)  # unique in [0, 10^8)
    operators = list(OPERATOR_SHARES)
    operator = choice(rng, n, OPERATOR_SHARES)
    prefix = np.empty(n, dtype=np.int64)
    for o, name in enumerate(operators):
        rows = operator == o
        table = np.array(OPERATOR_PREFIXES[name])
        prefix[rows] = table[rng.integers(0, len(table), int(rows.sum()))]
    lengths = np.array(list(PHONE_LENGTH_SHARES))[choice(rng, n, PHONE_LENGTH_SHARES)]
    # An 11-digit number has room for 7 subscriber digits: only people whose number fits get one.
    lengths = np.where((lengths == 11) & (subscriber >= 10**7), 12, lengths)
    extra = rng.integers(1, 10, n)  # 13 digits: one more digit before the 8-digit subscriber number
    national = np.where(
        lengths == 13,
        (prefix * 10 + extra) * 10**8 + subscriber,
        np.where(lengths == 12, prefix * 10**8 + subscriber, prefix * 10**7 + subscriber),
    )
    # "0" + the national number (which starts with 8): spelled as the number with a 9 in front
    # (lengths - 1 is the national number's digit count), then each row's first byte set to "0".
    text = pa.array(national + 9 * 10 ** (lengths - 1)).cast(pa.string())
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=n + 1, offset=text.offset * 4)
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)[: offsets[-1]].copy()
    data[offsets[:-1]] = ord("0")
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.copy()), pa.py_buffer(data))


def invalid_phones(rng: np.random.Generator, n: int) -> pa.Array:
    """Numbers a form should refuse, in the shapes `simulator.rules.phone.NOT_MOBILE_SHAPES` lists
    (too short, too long, a toll-free 0800, a landline): each one fails the API's phone rule."""
    shapes = list(NOT_MOBILE_SHAPES.values())
    lead = np.array([int(leading) for leading, _ in shapes], dtype=np.int64)
    width = np.array([total for _, total in shapes], dtype=np.int64)
    rest = width - np.array([len(leading) for leading, _ in shapes], dtype=np.int64)  # digits after them
    kind = rng.integers(0, len(shapes), n)
    body = rng.integers(0, 10**7, n)
    long_body = rng.integers(0, 10**11, n)
    tail_digits = rest[kind]
    tail = np.where(
        tail_digits > 8,
        long_body % 10**tail_digits,
        body % 10**tail_digits * 10 ** np.maximum(0, tail_digits - 7),
    )
    return digits_varwidth(lead[kind] * 10**tail_digits + tail, width[kind])


def draw_passwords(
    rng: np.random.Generator, given_word: np.ndarray, email_forms: np.ndarray, birth_year: np.ndarray
) -> pa.Array:
    """Deterministic plain passwords the way people pick them: Name + year or digits + a symbol, 8+."""
    n = len(given_word)
    name = take(_word_tables(tuple(email_forms))[1], given_word)
    number = np.where(rng.random(n) < 0.6, birth_year, rng.integers(0, 10_000, n))
    symbol = rng.integers(0, len(_SYMBOLS), n)
    if len(number) and 0 <= number.min() and number.max() < 10_000:
        # Four digits and a symbol from one per-process table of their 60,000 combinations.
        password = join([name, take(_digits_and_symbols(), number * len(_SYMBOLS) + symbol)])
    else:
        password = join([name, digits(number, 4), take(pa.array(list(_SYMBOLS)), symbol)])
    return pc.utf8_rpad(password, width=8, padding="7")


_SYMBOLS = ("", "!", "@", "#", ".", "*")


@functools.cache
def _digits_and_symbols() -> pa.Array:
    return pa.array([f"{k:04d}{s}" for k in range(10_000) for s in _SYMBOLS], type=pa.string())
