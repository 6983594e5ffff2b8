"""seed-db --mapping speed: a mapped schema against the reference seed of the same population, same run.

Baseline: ``prakerja-sim seed-db --size N --truncate`` into the reference schema on PostgreSQL (its
staged load). Ours, each into a scratch database of its own, right after it:
``--mapping simulator/seed/mapping/reference.toml`` (the very same tables, rows and width; plain
seed-db goes through the same loader with that mapping, so this measures what the reference schema's
own rules add), and a foreign schema of another shape (``--foreign``: Django-style
auth_user + profile + KTP + test + waves + membership + recipients + a registry table, integer keys,
pbkdf2_sha256 passwords). Every run writes the same applicants (seed 1, the default password pool).
Prints each time, rows and the ratio mapped / reference (goal <= 1.2), then the median over
``--repeat`` rounds, with the load average beside each round (on a shared machine the ratio, both
sides measured back to back, moves much less than either time).

    python benchmarks/bench_seed_mapping.py [--pg URL] [--size 200000] [--repeat 3] [--foreign]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import sqlalchemy as sa

from simulator.api.testing import scratch_database
from simulator.database import schema
from simulator.database.db import make_engine
from simulator.seed.mapping import REFERENCE_MAPPING

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"

FOREIGN_DDL = """
CREATE TABLE penduduk (nik varchar(16) PRIMARY KEY, no_kk varchar(16) NOT NULL,
  nama varchar(200) NOT NULL,
  tgl_lahir date NOT NULL, jenis_kelamin varchar(1) NOT NULL, kode_provinsi varchar(16) NOT NULL,
  kode_kabupaten varchar(16) NOT NULL, pekerjaan varchar(100) NOT NULL, penerima boolean NOT NULL);
CREATE INDEX penduduk_no_kk ON penduduk (no_kk);
CREATE TABLE auth_user (id serial PRIMARY KEY, password varchar(128) NOT NULL, last_login timestamp,
  is_superuser boolean NOT NULL, username varchar(150) NOT NULL UNIQUE,
  first_name varchar(150) NOT NULL,
  last_name varchar(150) NOT NULL, email varchar(254) NOT NULL, is_staff boolean NOT NULL,
  is_active boolean NOT NULL, date_joined timestamp NOT NULL, no_hp varchar(20) UNIQUE);
CREATE TABLE peserta_profil (id serial PRIMARY KEY,
  user_id integer NOT NULL UNIQUE REFERENCES auth_user (id),
  nik varchar(16) NOT NULL UNIQUE, no_kk varchar(16) NOT NULL, tgl_lahir date NOT NULL,
  alamat varchar(300) NOT NULL,
  kode_provinsi varchar(16) NOT NULL, pendidikan varchar(50) NOT NULL,
  pekerjaan varchar(50) NOT NULL,
  diperbarui timestamp NOT NULL);
CREATE INDEX peserta_profil_no_kk ON peserta_profil (no_kk);
CREATE TABLE unggah_ktp (id bigserial PRIMARY KEY,
  user_id integer NOT NULL REFERENCES auth_user (id),
  hasil varchar(40) NOT NULL, ukuran integer NOT NULL, sha256 varchar(64) NOT NULL,
  dibuat timestamp NOT NULL);
CREATE INDEX unggah_ktp_user ON unggah_ktp (user_id);
CREATE TABLE hasil_tes (user_id integer PRIMARY KEY REFERENCES auth_user (id),
  jawaban varchar(64) NOT NULL,
  skor smallint NOT NULL, selesai timestamp NOT NULL);
CREATE TABLE gelombang (id serial PRIMARY KEY, nomor integer NOT NULL UNIQUE,
  dibuka timestamp NOT NULL,
  ditutup timestamp NOT NULL, kuota integer NOT NULL, status varchar(10) NOT NULL);
CREATE TABLE keanggotaan_gelombang (id bigserial PRIMARY KEY,
  user_id integer NOT NULL REFERENCES auth_user (id),
  gelombang_id integer NOT NULL REFERENCES gelombang (id), bergabung timestamp NOT NULL,
  urutan integer NOT NULL,
  terpilih boolean, UNIQUE (gelombang_id, user_id));
CREATE INDEX keanggotaan_user ON keanggotaan_gelombang (user_id);
CREATE TABLE penerima (user_id integer PRIMARY KEY REFERENCES auth_user (id),
  gelombang_id integer NOT NULL REFERENCES gelombang (id), no_kk varchar(16) NOT NULL,
  status varchar(20) NOT NULL,
  dipilih timestamp NOT NULL, pelatihan_dibeli timestamp, selesai timestamp,
  insentif smallint NOT NULL,
  dicabut timestamp);
CREATE INDEX penerima_no_kk ON penerima (no_kk);
"""

FOREIGN_MAPPING = """
version = 1
[tables.penduduk]
from = "residents"
[tables.penduduk.columns]
nik = { copy = "nik" }
no_kk = { copy = "kk" }
nama = { copy = "full_name" }
tgl_lahir = { copy = "birth_date" }
jenis_kelamin = { copy = "gender" }
kode_provinsi = { copy = "province_code" }
kode_kabupaten = { copy = "regency_code" }
pekerjaan = { copy = "occupation" }
penerima = { copy = "is_recipient" }
[tables.auth_user]
from = "accounts"
[tables.auth_user.columns]
id = { sequence = 1 }
password = { password = "pbkdf2_sha256" }
last_login = { copy = "email_verified_at" }
is_superuser = false
username = { copy = "email" }
first_name = { copy = "full_name", case = "title" }
last_name = ""
email = { copy = "email" }
is_staff = false
is_active = true
date_joined = { copy = "created_at" }
no_hp = { copy = "verified_phone", phone = "+62" }
[tables.peserta_profil]
from = "profiles"
[tables.peserta_profil.columns]
id = { sequence = 1 }
user_id = { ref = "auth_user.id" }
nik = { copy = "nik" }
no_kk = { copy = "kk" }
tgl_lahir = { copy = "birth_date" }
alamat = { copy = "address" }
kode_provinsi = { copy = "province_code" }
pendidikan = { copy = "education" }
pekerjaan = { copy = "employment_status" }
diperbarui = { copy = "updated_at" }
[tables.unggah_ktp]
from = "ktp_uploads"
[tables.unggah_ktp.columns]
user_id = { ref = "auth_user.id" }
hasil = { copy = "verdict" }
ukuran = { copy = "size_bytes" }
sha256 = { copy = "sha256" }
dibuat = { copy = "created_at" }
[tables.hasil_tes]
from = "test_results"
[tables.hasil_tes.columns]
user_id = { ref = "auth_user.id" }
jawaban = { copy = "answers" }
skor = { copy = "score" }
selesai = { copy = "completed_at" }
[tables.gelombang]
from = "waves"
[tables.gelombang.columns]
id = { sequence = 1 }
nomor = { copy = "number" }
dibuka = { copy = "opens_at" }
ditutup = { copy = "closes_at" }
kuota = { copy = "quota" }
status = { copy = "state" }
[tables.keanggotaan_gelombang]
from = "wave_joins"
[tables.keanggotaan_gelombang.columns]
id = { sequence = 1 }
user_id = { ref = "auth_user.id" }
gelombang_id = { ref = "gelombang.id" }
bergabung = { copy = "joined_at" }
urutan = { copy = "join_order" }
terpilih = { copy = "selected" }
[tables.penerima]
from = "recipients"
[tables.penerima.columns]
user_id = { ref = "auth_user.id" }
gelombang_id = { ref = "gelombang.id" }
no_kk = { copy = "kk" }
status = { copy = "recipient_state" }
dipilih = { copy = "selected_at" }
pelatihan_dibeli = { copy = "training_bought_at" }
selesai = { copy = "training_finished_at" }
insentif = { copy = "incentive_months_paid" }
dicabut = { copy = "revoked_at" }
"""


def seed(db_url: str, size: int, tmp: str, *extra: str) -> tuple[float, int]:
    """``seed-db --size N --truncate`` in a subprocess: (seconds, rows written)."""
    cmd = [
        sys.executable, "-m", "simulator.cli", "seed-db", "--db", db_url, "--size", str(size), "--seed", "1",
        "--truncate", "--passwords-out", os.path.join(tmp, "pw.csv"), "--as-of", "2026-11-27T22:00", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"seed-db failed ({done.returncode}): {done.stderr.strip()}")
    match = re.search(r"([\d,]+) rows in", done.stdout)
    return seconds, int(match.group(1).replace(",", "")) if match else 0


def prepared(db_url: str, ddl: str | None) -> None:
    engine = make_engine(db_url)
    try:
        if ddl is None:
            schema.create_schema(engine)
        else:
            with engine.begin() as conn:
                for statement in filter(str.strip, ddl.split(";")):
                    conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("PRAKERJA_TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--size", type=int, default=200_000, help="applicants per seed")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (reference, mapped, foreign)")
    parser.add_argument("--foreign", action="store_true", help="also seed the Django-style foreign schema")
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {"reference.toml": [], "foreign": []}
    with tempfile.TemporaryDirectory(prefix="bench-map-") as tmp:
        foreign_mapping = os.path.join(tmp, "foreign.toml")
        with open(foreign_mapping, "w", encoding="utf-8") as handle:
            handle.write(FOREIGN_MAPPING)
        for round_ in range(1, args.repeat + 1):
            with scratch_database(args.pg, prefix="bench_map_ref") as db:
                base_s, base_rows = seed(db, args.size, tmp)
            print(f"round {round_}: seed-db (reference): {base_rows:,} rows in {base_s:.2f} s")
            runs = [("reference.toml", None, REFERENCE_MAPPING)]
            if args.foreign:
                runs.append(("foreign", FOREIGN_DDL, foreign_mapping))
            for label, ddl, mapping in runs:
                with scratch_database(args.pg, prefix="bench_map") as db:
                    prepared(db, ddl)
                    seconds, rows = seed(db, args.size, tmp, "--mapping", mapping)
                ratios[label].append(seconds / base_s)
                print(
                    f"  --mapping {label}: {rows:,} rows in {seconds:.2f} s, "
                    f"ratio {seconds / base_s:.2f} (goal <= 1.20)"
                )
            print(f"  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    for label, values in ratios.items():
        if values:
            print(f"median ratio --mapping {label} / reference over {len(values)} round(s): "
                  f"{statistics.median(values):.2f} (goal <= 1.20)")  # fmt: skip


if __name__ == "__main__":
    main()
