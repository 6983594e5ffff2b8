"""Deliberate defects for negative testing: names, the reason each one must produce, and profiles.

A profile is a name (``none``, ``realistic``, ``heavy``) or a rate list like
``nik_not_found=0.02,duplicate_email=0.01`` (unlisted defects keep the base profile's rate when
written ``realistic+nik_not_found=0.05``, else 0). Each applicant carries at most one defect.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.errors import InvalidOption
from simulator.rules.reasons import Reason

DEFECT_REASONS: dict[str, Reason] = {
    "nik_not_found": Reason.NIK_NOT_FOUND,  # well-formed NIK the registry does not hold
    "nik_malformed": Reason.NIK_MALFORMED,  # wrong length, impossible date or unknown district
    "nik_birthdate_mismatch": Reason.NIK_BIRTHDATE_MISMATCH,  # birth date typed differs from the registry
    "nik_kk_mismatch": Reason.NIK_KK_MISMATCH,  # KK typed is another family's card
    "duplicate_nik": Reason.NIK_ALREADY_REGISTERED,  # a second account for an already registered NIK
    "duplicate_email": Reason.EMAIL_TAKEN,
    "duplicate_phone": Reason.PHONE_TAKEN,
    "email_typo_domain": Reason.EMAIL_DOMAIN_TYPO,  # gmial.com: the OTP can never arrive
    "invalid_phone": Reason.PHONE_INVALID,
    "underage": Reason.UNDERAGE,
    "still_student": Reason.STILL_STUDENT,
    "excluded_occupation": Reason.EXCLUDED_OCCUPATION,  # civil servant, TNI, Polri, village official...
    "already_recipient": Reason.ALREADY_RECIPIENT,
    "receives_other_aid": Reason.RECEIVES_OTHER_AID,
    "kk_recipient_limit": Reason.KK_RECIPIENT_LIMIT,  # two other members of the KK already receive it
}
DEFECT_NAMES: tuple[str, ...] = tuple(DEFECT_REASONS)

# "realistic": the most common failures were a NIK not (yet) in the central registry and typing
# mistakes (docs/domain.md); 20M of 26M email-verified registrants passed the NIK+KK check.
PROFILES: dict[str, dict[str, float]] = {
    "none": {},
    "realistic": {
        "nik_not_found": 0.040,
        "nik_malformed": 0.010,
        "nik_birthdate_mismatch": 0.015,
        "nik_kk_mismatch": 0.020,
        "duplicate_nik": 0.005,
        "duplicate_email": 0.003,
        "duplicate_phone": 0.003,
        "email_typo_domain": 0.010,
        "invalid_phone": 0.005,
        "underage": 0.002,
        "still_student": 0.010,
        "excluded_occupation": 0.005,
        "already_recipient": 0.005,
        "receives_other_aid": 0.010,
        "kk_recipient_limit": 0.002,
    },
    "heavy": {name: 0.03 for name in DEFECT_REASONS},
}
DEFAULT_PROFILE = "realistic"


@dataclass(frozen=True)
class DefectRates:
    """The share of applicants receiving each defect (sums to at most 1)."""

    rates: tuple[tuple[str, float], ...]

    @property
    def as_dict(self) -> dict[str, float]:
        return dict(self.rates)

    @property
    def total(self) -> float:
        return sum(rate for _, rate in self.rates)


def parse_defects(spec: str | dict[str, float] | DefectRates | None) -> DefectRates:
    """A :class:`DefectRates` from a profile name, a rate list, a dict or ``None`` (the default)."""
    if isinstance(spec, DefectRates):
        return spec
    if spec is None:
        spec = DEFAULT_PROFILE
    if isinstance(spec, dict):
        rates = dict(spec)
    else:
        text = spec.strip()
        base, _, extra = text.partition("+") if "+" in text else ("", "", text)
        if text in PROFILES:
            base, extra = text, ""
        if base and base not in PROFILES:
            raise InvalidOption(f"--defects: unknown profile {base!r} (profiles: {', '.join(PROFILES)})")
        rates = dict(PROFILES.get(base, {}))
        for item in filter(None, (part.strip() for part in extra.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep:
                raise InvalidOption(
                    f"--defects: {item!r} is neither a profile ({', '.join(PROFILES)}) nor NAME=RATE"
                )
            try:
                rates[name] = float(value)
            except ValueError:
                raise InvalidOption(f"--defects: rate of {name!r} must be a number, got {value!r}") from None
    for name, rate in rates.items():
        if name not in DEFECT_REASONS:
            raise InvalidOption(f"--defects: unknown defect {name!r} (known: {', '.join(DEFECT_NAMES)})")
        if not 0.0 <= rate <= 1.0:
            raise InvalidOption(f"--defects: rate of {name} must be between 0 and 1, got {rate}")
    result = DefectRates(tuple((n, float(rates[n])) for n in DEFECT_NAMES if rates.get(n, 0.0) > 0))
    if result.total > 1.0 + 1e-9:
        raise InvalidOption(
            f"--defects: rates add up to {result.total:.3f}; at most 1 (one defect per applicant)"
        )
    return result
