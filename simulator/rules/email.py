"""Email rules shared by the population generator and the reference API: the address format and
misspelt mail domains.

The generator's `email_typo_domain` defects draw from `TYPO_DOMAINS` and the API refuses exactly
these (`email_refusal`); the API stores an address in lower case (`normalize_email`).
"""

from __future__ import annotations

import re

from simulator.rules.reasons import Reason

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+\-]{1,64}@(?:[A-Za-z0-9\-]{1,63}\.)+[A-Za-z]{2,24}$")
"""A plain address: local part of at most 64 safe characters, dotted domain, 2-24 letter TLD."""

# Domains one slip of the finger away from a real provider: the OTP email never arrives.
TYPO_DOMAINS: tuple[str, ...] = (
    "gmial.com",
    "gmail.co",
    "gmai.com",
    "gmail.con",
    "gamil.com",
    "gnail.com",
    "yaho.com",
    "yahoo.co",
    "hotmial.com",
    "gmail.cm",
    "gmal.com",
    "yahoo.co.od",
)

TYPO_DOMAIN_SET: frozenset[str] = frozenset(TYPO_DOMAINS)
"""The same domains for membership tests."""


def normalize_email(email: str) -> str:
    """The stored form of an address: lower case."""
    return email.lower()


def email_refusal(email: str) -> tuple[Reason, str] | None:
    """Why ``email`` cannot sign up (EMAIL_INVALID, EMAIL_DOMAIN_TYPO) with a message, or None."""
    lowered = normalize_email(email)
    if not EMAIL_RE.match(lowered):
        return Reason.EMAIL_INVALID, f"{email!r} is not an email address"
    domain = lowered.rpartition("@")[2]
    if domain in TYPO_DOMAIN_SET:
        return Reason.EMAIL_DOMAIN_TYPO, f"@{domain} looks like a misspelt mail domain; check it"
    return None
