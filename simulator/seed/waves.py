"""The wave calendar a seeded database lives in: waves 1..K-1 closed, wave K open now.

The published 2020-2021 calendar is shifted so that wave K opened an hour before ``as_of``: the
reference API then takes joins for it at once, and older waves keep their real spacing.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from simulator.errors import InvalidOption

WIB = dt.timezone(dt.timedelta(hours=7))


@dataclass(frozen=True)
class PublishedWave:
    number: int
    opens: dt.datetime  # WIB
    closes: dt.datetime  # WIB
    accepted: int  # quota / accepted as published


def _wib(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=WIB)


# docs/domain.md "Waves" (tribun-bali, indonesiapos, kumparan, liputan6, cnnindonesia,
# bisnis.com, okezone). Times the sources leave out are assumed: a wave opens at 12:00 WIB and
# closes 4 days later at 12:00 (wave 3: 26 -> 30 Apr 16:00; wave 6 opened 26 Aug).
PUBLISHED_WAVES: tuple[PublishedWave, ...] = (
    PublishedWave(1, _wib("2020-04-11T19:00"), _wib("2020-04-16T16:00"), 168_111),
    PublishedWave(2, _wib("2020-04-20T08:00"), _wib("2020-04-23T16:00"), 288_154),
    PublishedWave(3, _wib("2020-04-26T12:00"), _wib("2020-04-30T16:00"), 224_615),
    PublishedWave(4, _wib("2020-08-08T12:00"), _wib("2020-08-13T00:00"), 800_000),
    PublishedWave(5, _wib("2020-08-15T12:00"), _wib("2020-08-19T12:00"), 800_000),
    PublishedWave(6, _wib("2020-08-26T12:00"), _wib("2020-08-31T12:00"), 800_000),
    PublishedWave(7, _wib("2020-09-03T12:00"), _wib("2020-09-07T12:00"), 800_000),
    PublishedWave(8, _wib("2020-09-10T12:00"), _wib("2020-09-14T12:00"), 800_000),
    PublishedWave(9, _wib("2020-09-17T12:00"), _wib("2020-09-21T12:00"), 800_000),
    PublishedWave(10, _wib("2020-09-26T12:00"), _wib("2020-09-28T12:00"), 116_261),
    PublishedWave(11, _wib("2020-11-02T12:00"), _wib("2020-11-04T12:00"), 400_000),
    PublishedWave(12, _wib("2021-02-23T12:00"), _wib("2021-02-26T12:00"), 600_000),
)

REGISTERED_BASE = 40_000_000
"""Accounts behind waves 1-10 (30 Oct 2020): quotas scale with the seeded accounts against it."""

RESULTS_DELAY = dt.timedelta(days=3)  # results came ~3-4 days after a wave closed
BUY_DEADLINE = dt.timedelta(days=30)  # the first training within 30 days, or the place is revoked


@dataclass(frozen=True)
class WaveCalendar:
    """Waves 1..open_wave: their times in naive UTC (the API's convention) on the shifted calendar."""

    open_wave: int
    as_of: dt.datetime  # naive UTC: "now" in the seeded world
    opens_at: np.ndarray  # datetime64[s], index = wave number - 1
    closes_at: np.ndarray
    published_accepted: np.ndarray  # int64

    @property
    def closed_waves(self) -> np.ndarray:
        return np.arange(1, self.open_wave, dtype=np.int64)

    @property
    def closed_accepted(self) -> np.ndarray:
        """Published accepted figures of the closed waves: the weights recipients are spread by."""
        return self.published_accepted[: self.open_wave - 1]

    def quotas(self, accounts: int, selected: np.ndarray) -> np.ndarray:
        """Every wave's published quota times one scale: the seeded accounts over the 40M real ones,
        raised just enough that each closed wave's quota holds the people it selected.

        ``selected`` counts recipients per wave number - 1 (closed waves only).
        """
        scale = accounts / REGISTERED_BASE
        closed = self.closed_accepted
        for wave_index, count in enumerate(np.asarray(selected)[: closed.size]):
            if count > 0:
                scale = max(scale, float(count) / float(closed[wave_index]))
        return np.array([math.ceil(q * scale - 1e-9) for q in self.published_accepted], dtype=np.int64)


def make_calendar(open_wave: int, as_of: dt.datetime, open_days: float = 7.0) -> WaveCalendar:
    """The shifted calendar: wave ``open_wave`` opened an hour before ``as_of``, open ``open_days`` more."""
    numbers = [w.number for w in PUBLISHED_WAVES]
    if open_wave not in numbers:
        raise InvalidOption(
            f"--wave must be between 1 and {numbers[-1]} (the published waves), got {open_wave}"
        )
    if open_days <= 0:
        raise InvalidOption("the open wave must stay open for a positive time")
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(dt.UTC).replace(tzinfo=None)
    current = PUBLISHED_WAVES[open_wave - 1]
    open_now = as_of - dt.timedelta(hours=1)
    shift = open_now - current.opens.astimezone(dt.UTC).replace(tzinfo=None)
    waves = PUBLISHED_WAVES[:open_wave]
    opens = [w.opens.astimezone(dt.UTC).replace(tzinfo=None) + shift for w in waves]
    closes = [w.closes.astimezone(dt.UTC).replace(tzinfo=None) + shift for w in waves]
    closes[-1] = as_of + dt.timedelta(days=open_days)
    return WaveCalendar(
        open_wave=open_wave,
        as_of=as_of,
        opens_at=np.array(opens, dtype="datetime64[s]"),
        closes_at=np.array(closes, dtype="datetime64[s]"),
        published_accepted=np.array([w.accepted for w in waves], dtype=np.int64),
    )
