"""Which KTP fixture is which: the variant mix, each fixture's variant and seed, the people on the cards.

Which variant each fixture gets and every random choice inside it follow from (seed, index), so the
same seed writes the same bytes whatever the number of workers. No files here: the fixture set on
disk (workers, files, manifest) is :mod:`simulator.io.ktp_fixtures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.errors import InvalidOption
from simulator.generators.ktp.variants import VARIANTS, Upload, render_variant

DEFAULT_VALID_SHARE = 0.8


def parse_mix(text: str | Mapping[str, float] | None) -> dict[str, float]:
    """``valid=0.8,cropped=0.05,...`` -> a weight per variant summing to 1.

    Variants not named share what the named ones leave; if every variant is named, weights are scaled.
    """
    given: dict[str, float] = {}
    if isinstance(text, Mapping):
        given = {str(k): float(v) for k, v in text.items()}
    elif text:
        for part in text.split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep:
                raise InvalidOption(f"--mix: {part.strip()!r} is not name=share")
            try:
                given[name] = float(value)
            except ValueError:
                raise InvalidOption(
                    f"--mix: share of {name!r} must be a number, got {value.strip()!r}"
                ) from None
    else:
        given = {"valid": DEFAULT_VALID_SHARE}
    unknown = sorted(set(given) - set(VARIANTS))
    if unknown:
        raise InvalidOption(f"--mix: unknown variant {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if any(not np.isfinite(v) or v < 0 for v in given.values()):
        raise InvalidOption("--mix: shares must be finite and not negative")
    total = sum(given.values())
    rest = [name for name in VARIANTS if name not in given]
    if total > 1 + 1e-9:
        raise InvalidOption(f"--mix: shares add up to {total:g}, more than 1")
    weights = {name: given.get(name, 0.0) for name in VARIANTS}
    if rest:
        for name in rest:
            weights[name] = (1 - total) / len(rest)
    elif total <= 0:
        raise InvalidOption("--mix: all shares are zero")
    else:
        weights = {name: w / total for name, w in weights.items()}
    return weights


def assign_variants(count: int, weights: Mapping[str, float], seed: int) -> list[str]:
    """Exactly ``round(count * share)`` fixtures per variant (largest remainder), shuffled by ``seed``."""
    names = list(VARIANTS)
    exact = np.array([weights.get(name, 0.0) for name in names]) * count
    counts = np.floor(exact).astype(int)
    short = count - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    order = np.repeat(np.arange(len(names)), counts)
    np.random.default_rng(np.random.SeedSequence([seed, 0x4B5450])).shuffle(order)
    return [names[i] for i in order]


def fixture_seed(seed: int, index: int) -> int:
    """The seed of fixture ``index``: independent of how fixtures are split among workers."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])


def people_from_tables(residents: pa.Table, applicants: pa.Table | None = None) -> list[dict[str, Any]]:
    """The cards to print: each applicant joined to their resident record by NIK (the card shows the truth).

    Applicants whose typed NIK matches no resident (malformed or unknown NIK defects) have no card
    we can print, so they are left out. Without applicants, every resident gets a card.
    """
    if applicants is None:
        rows = residents.to_pylist()
        for row in rows:
            row["applicant_id"] = ""
        return rows
    ids = applicants.select(["applicant_id", "nik"])
    joined = ids.join(residents, keys="nik", join_type="inner", use_threads=False)
    joined = joined.sort_by([("applicant_id", "ascending")])
    return joined.to_pylist()


def generated_people(count: int, seed: int) -> list[dict[str, Any]]:
    """A fresh population of ``count`` applicants (embedded default when no --population is given)."""
    from simulator.generators.population import generate_tables

    residents, applicants = generate_tables(max(1, count), seed)
    return people_from_tables(residents, applicants)


def render_fixture(
    people: Sequence[Mapping[str, Any]], seed: int, index: int, variant: str
) -> tuple[Mapping[str, Any], Upload]:
    """Fixture ``index`` of a set: its person (``people`` cycled in order) and its rendered upload."""
    person = people[index % len(people)]
    return person, render_variant(person, fixture_seed(seed, index), variant)
