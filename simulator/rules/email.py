"""Email rules shared by the population generator and the reference API: misspelt mail domains.

The generator's `email_typo_domain` defects draw from this list and the API refuses exactly these.
"""

from __future__ import annotations

# Domains one slip of the finger away from a real provider: the OTP email never arrives.
TYPO_DOMAINS: tuple[str, ...] = (
    "gmial.com", "gmail.co", "gmai.com", "gmail.con", "gamil.com", "gnail.com", "yaho.com",
    "yahoo.co", "hotmial.com", "gmail.cm", "gmal.com", "yahoo.co.od",
)

TYPO_DOMAIN_SET: frozenset[str] = frozenset(TYPO_DOMAINS)
"""The same domains for membership tests."""

