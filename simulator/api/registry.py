"""The simulated Dukcapil registry: seeded from a population's ``residents``, slow and fallible on demand.

The identity check matches NIK, KK and birth date against it, with the latency and error rate the
server was started with, so a load test sees the upstream bottleneck the real program had.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, delete, insert

from simulator.api.settings import Settings
from simulator.database import schema as t
from simulator.database.db import write_transaction
from simulator.errors import InvalidInputFile
from simulator.rules.reasons import Reason

REQUIRED_COLUMNS = (
    "nik",
    "kk",
    "birth_date",
    "full_name",
    "gender",
    "province_code",
    "regency_code",
    "district_code",
    "occupation",
)
FLAG_COLUMNS = ("is_recipient", "receives_other_aid", "is_priority")
OPTIONAL_COLUMNS = ("village_code",)
CHUNK_ROWS = 20_000


class RegistryUnavailable(Exception):
    """An injected upstream fault: the registry timed out or failed."""

    reason = Reason.REGISTRY_UNAVAILABLE


class RegistryLink:
    """The API's connection to the simulated registry: a latency draw, maybe a failure, then the lookup."""

    def __init__(self, settings: Settings, rng: random.Random | None = None):
        self.settings = settings
        self.rng = rng or random.Random(settings.fault_seed)

    async def call(self) -> None:
        """Wait like the real registry would; raise `RegistryUnavailable` as often as configured."""
        delay_ms = self.settings.registry_latency.sample_ms(self.rng)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if self.settings.registry_error_rate and self.rng.random() < self.settings.registry_error_rate:
            raise RegistryUnavailable("the population registry (Dukcapil) did not answer; try again later")


def _column(table: pa.Table, name: str, path: Path) -> list[Any]:
    if name not in table.column_names:
        raise InvalidInputFile(
            f"{path}: the residents table has no column {name!r} (needed to seed the registry); "
            f"it has {', '.join(table.column_names)}"
        )
    return table.column(name).to_pylist()


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _rows(batch: pa.Table, path: Path) -> list[dict[str, Any]]:
    columns = {name: _column(batch, name, path) for name in REQUIRED_COLUMNS}
    n = batch.num_rows
    for name in OPTIONAL_COLUMNS:
        columns[name] = batch.column(name).to_pylist() if name in batch.column_names else [None] * n
    for name in FLAG_COLUMNS:
        columns[name] = (
            [bool(v) for v in batch.column(name).to_pylist()] if name in batch.column_names else [False] * n
        )
    columns["birth_date"] = [_as_date(v) for v in columns["birth_date"]]
    for name in ("nik", "kk"):
        columns[name] = [str(v) for v in columns[name]]
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def load_residents(engine: Engine, population_dir: str | Path, progress=None) -> int:
    """Replace the registry with the ``residents`` table of a population directory; returns rows loaded."""
    from simulator.io.reader import read_table  # the population generator's reader

    path = Path(population_dir)
    if not path.is_dir():
        raise InvalidInputFile(f"{path}: --registry expects a population directory (with manifest.json)")
    table = read_table(path, "residents")
    if not isinstance(table, pa.Table):
        table = pa.Table.from_batches(list(table))
    loaded = 0
    with write_transaction(engine) as conn:
        conn.execute(delete(t.residents))
        for start in range(0, table.num_rows, CHUNK_ROWS):
            rows = _rows(table.slice(start, CHUNK_ROWS), path)
            conn.execute(insert(t.residents), rows)
            loaded += len(rows)
            if progress:
                progress(len(rows))
    return loaded
