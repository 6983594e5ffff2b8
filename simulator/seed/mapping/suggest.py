"""``seed-db --suggest-mapping``: a draft mapping for the schema in a database, by names and types.

Tables are placed by what they hold (a user table has an e-mail or a password, a wave table a wave
number, a membership table keys to both); columns by name (nik, no_kk, email/surel, hp/no_telp,
nama, tgl_lahir, alamat, kata_sandi, created_at, ...). The draft is checked like any mapping: a guess
the schema refuses is dropped, and what could not be placed is marked ``{ todo = "..." }``, so the
draft validates once those marks are filled in.
"""

from __future__ import annotations

import json
import re

import sqlalchemy as sa

from simulator.seed.mapping.check import (
    INTEGER,
    TEXT,
    UUID,
    fills_itself,
    mapping_problems,
    target_kind,
)
from simulator.seed.mapping.sources import ACCOUNTS, WAVES
from simulator.seed.mapping.spec import parse_mapping

# Column names (lower case, without separators) and the account column each one is filled from.
_ACCOUNT_NAMES: tuple[tuple[tuple[str, ...], dict], ...] = (
    (("nik", "nomorindukkependudukan", "noktp", "nomorktp"), {"copy": "nik"}),
    (("nokk", "kk", "nomorkk", "nomorkartukeluarga"), {"copy": "kk"}),
    (("email", "surel", "emailaddress", "alamatemail", "username"), {"copy": "email"}),
    (
        ("phone", "hp", "nohp", "notelp", "notelepon", "telepon", "phonenumber", "mobile", "nomorhp", "nowa"),
        {"copy": "verified_phone"},
    ),
    (
        ("name", "nama", "fullname", "namalengkap", "firstname", "namadepan", "displayname"),
        {"copy": "full_name", "case": "title"},
    ),
    (("lastname", "namabelakang"), {"const": ""}),
    (
        ("birthdate", "tgllahir", "tanggallahir", "dob", "dateofbirth", "dateofbirthday"),
        {"copy": "birth_date"},
    ),
    (("birthplace", "tempatlahir", "placeofbirth"), {"copy": "birth_place"}),
    (("address", "alamat", "streetaddress"), {"copy": "address"}),  # profile_address once identity-verified
    (("gender", "sex", "jeniskelamin", "jk"), {"copy": "gender"}),
    (
        ("password", "katasandi", "passwordhash", "hashedpassword", "encryptedpassword", "passwd"),
        {"password": "argon2id"},
    ),
    (
        ("createdat", "datejoined", "registeredat", "tgldaftar", "tanggaldaftar", "createdon", "created"),
        {"copy": "created_at"},
    ),
    (("updatedat", "modifiedat", "updatedon", "modified"), {"copy": "created_at"}),
    (("emailverifiedat", "verifiedat", "emailconfirmedat"), {"copy": "email_verified_at"}),
    (("phoneverifiedat",), {"copy": "phone_verified_at"}),
    (("lastlogin", "lastloginat"), {"copy": "email_verified_at"}),
    (("isactive", "active", "enabled", "aktif"), {"const": True}),
    (("isstaff", "issuperuser", "isadmin", "admin"), {"const": False}),
    (("status", "state", "funnelstate"), {"copy": "state"}),
    (("wave", "gelombang", "wavenumber", "nomorgelombang", "batch"), {"copy": "wave_number"}),
    (("joinedat", "bergabungpada", "tglgabung"), {"copy": "joined_at"}),
    (("selected", "terpilih", "isselected", "lolos"), {"copy": "selected"}),
    (("selectedat",), {"copy": "selected_at"}),
    (("education", "pendidikan", "pendidikanterakhir"), {"copy": "education"}),
    (("employmentstatus", "statuspekerjaan", "pekerjaan"), {"copy": "employment_status"}),
    (("province", "provinsi"), {"copy": "province"}),
    (("city", "regency", "kota", "kabupaten", "kabkota"), {"copy": "regency"}),
    (("postalcode", "kodepos", "zip", "zipcode"), {"copy": "postal_code"}),
    (("submittedat", "identityverifiedat", "verifiedidentityat"), {"copy": "identity_checked_at"}),
)
_WAVE_NAMES: tuple[tuple[tuple[str, ...], dict], ...] = (
    (("number", "nomor", "no", "wavenumber", "gelombang", "ke"), {"copy": "number"}),
    (
        ("opensat", "dibuka", "startsat", "startat", "mulai", "opensat", "tglbuka", "start"),
        {"copy": "opens_at"},
    ),
    (("closesat", "ditutup", "endsat", "endat", "selesai", "tgltutup", "end"), {"copy": "closes_at"}),
    (("quota", "kuota", "capacity"), {"copy": "quota"}),
    (("state", "status"), {"copy": "state"}),
    (("mode",), {"copy": "mode"}),
    (("joinedcount", "jumlahpeserta"), {"copy": "joined_count"}),
    (("selectedcount",), {"copy": "selected_count"}),
    (("createdat", "updatedat"), {"copy": "created_at"}),
)
_PASSWORD_NAMES = frozenset({"password", "katasandi", "passwordhash", "hashedpassword", "encryptedpassword"})
_WAVE_TABLE = re.compile(r"wave|gelombang|batch|cohort|angkatan", re.I)
_JOIN_TABLE = re.compile(r"join|member|anggota|peserta_gelombang|enrol|participa", re.I)
_PERSON = (
    "nik",
    "nokk",
    "kk",
    "birthdate",
    "tgllahir",
    "tanggallahir",
    "dob",
    "dateofbirth",
    "alamat",
    "address",
)


def _plain(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _guess(name: str, table: list) -> dict | None:
    plain = _plain(name)
    for names, guess in table:
        if plain in names:
            return dict(guess)
    return None


def suggest_mapping(conn: sa.Connection) -> str:
    """A draft mapping (TOML text) for every table of the connected database it can place."""
    metadata = sa.MetaData()
    metadata.reflect(bind=conn)
    tables = [t for t in metadata.sorted_tables if not t.name.startswith(("prakerja_seed_stage_", "sqlite_"))]
    users = _user_table(tables)
    waves = next((t for t in tables if _WAVE_TABLE.search(t.name) and _has_wave_columns(t)), None)
    drafts: dict[str, dict] = {}
    skipped: list[str] = []
    for table in tables:
        source = _source_of(table, users, waves)
        if source is None:
            skipped.append(table.name)
            continue
        drafts[table.name] = {"from": source, "columns": {}}
        if source == "accounts" and table is not users and _has_person_columns(table):
            drafts[table.name]["min_state"] = "identity_verified"
    for table in tables:
        if table.name in drafts:
            drafts[table.name]["columns"] = _columns(table, drafts)
    _settle(drafts, conn)
    return _render(drafts, skipped)


def _user_table(tables: list[sa.Table]) -> sa.Table | None:
    def score(table: sa.Table) -> int:
        names = {_plain(c.name) for c in table.columns}
        return (
            2 * bool(names & _PASSWORD_NAMES)
            + bool(names & {"email", "surel", "emailaddress", "username"})
            + bool(re.search(r"user|akun|account|pengguna|peserta", table.name, re.I))
        )

    ranked = sorted((t for t in tables if score(t) >= 2), key=score, reverse=True)
    return ranked[0] if ranked else None


def _has_wave_columns(table: sa.Table) -> bool:
    return any(_guess(c.name, _WAVE_NAMES) for c in table.columns)


def _has_person_columns(table: sa.Table) -> bool:
    return any(_plain(c.name) in _PERSON for c in table.columns)


def _refers(table: sa.Table, parent: sa.Table | None) -> bool:
    return parent is not None and any(fk.column.table is parent for fk in table.foreign_keys)


def _source_of(table: sa.Table, users: sa.Table | None, waves: sa.Table | None) -> str | None:
    if table is users:
        return "accounts"
    if table is waves:
        return "waves"
    if _refers(table, users) and _refers(table, waves):
        return "wave_joins"
    if _refers(table, users) and _JOIN_TABLE.search(table.name) and waves is None:
        return "wave_joins"
    if _refers(table, users):
        one_per_user = any(
            fk.parent.unique or fk.parent.primary_key for fk in table.foreign_keys if fk.column.table is users
        ) or _has_person_columns(table)
        return "accounts" if one_per_user else None
    if re.search(r"resident|penduduk|dukcapil|registry", table.name, re.I):
        return "residents"
    return None


def _columns(table: sa.Table, drafts: dict[str, dict]) -> dict[str, dict]:
    source = drafts[table.name]["from"]
    columns: dict[str, dict] = {}
    for column in table.columns:
        guess = _column(column, source, drafts)
        if guess is not None:
            columns[column.name] = guess
    return columns


def _column(column: sa.Column, source: str, drafts: dict[str, dict]) -> dict | None:
    kind = target_kind(column.type)
    if column.foreign_keys:
        fk = next(iter(column.foreign_keys))
        parent = fk.column.table.name
        if parent in drafts and parent != column.table.name:
            return {"ref": f"{parent}.{fk.column.name}"}
        return _todo(column, f"refers to {parent}, which the draft does not seed")
    if column.primary_key and len(column.table.primary_key.columns) == 1:
        if kind == INTEGER:
            return {"sequence": 1}
        if kind == UUID or (kind == TEXT and getattr(column.type, "length", None) in (32, 36)):
            return {"uuid": "ordered"}
    if source == "waves":
        guess = _guess(column.name, _WAVE_NAMES)
        if guess is None and column.name in WAVES:
            guess = {"copy": column.name}
    elif source == "residents":
        guess = {"copy": column.name} if column.name in ACCOUNTS else None
    else:
        guess = _guess(column.name, _ACCOUNT_NAMES)
        if guess is None and column.name in ACCOUNTS:
            guess = {"copy": column.name}
        if guess and guess.get("copy") == "address" and drafts[column.table.name].get("min_state"):
            guess = {"copy": "profile_address"}  # as typed in the profile step, RT/RW and village
        if guess and "password" in guess:
            guess["password"] = _scheme(column)
        if guess and guess.get("copy") == "verified_phone" and kind == TEXT and not column.nullable:
            guess = {"copy": "phone"}
    if guess is None:
        if column.nullable or fills_itself(column):
            return None
        return _todo(column, "no population column by this name")
    return guess


def _scheme(column: sa.Column) -> str:
    """The hash format a password column most likely holds, by its table's style."""
    names = {c.name for c in column.table.columns}
    length = getattr(column.type, "length", None)
    if column.table.name == "auth_user" or "is_staff" in names or "date_joined" in names:
        return "pbkdf2_sha256"
    if "remember_token" in names or "email_verified_at" in names or (length is not None and length < 88):
        return "bcrypt"
    return "argon2id"


def _todo(column: sa.Column, why: str) -> dict | None:
    if column.nullable or fills_itself(column):
        return None
    null = "" if column.nullable else " NOT NULL"
    return {"todo": f"{column.type}{null}: {why}"}


def _settle(drafts: dict[str, dict], conn: sa.Connection, rounds: int = 8) -> None:
    """Check the draft as a mapping; a guess the schema refuses becomes a todo (NOT NULL) or goes."""
    pattern = re.compile(r"^tables\.([^.]+)\.columns\.([^.:]+)[.:]")
    for _ in range(rounds):
        runnable = {
            name: {**draft, "columns": {c: v for c, v in draft["columns"].items() if "todo" not in v}}
            for name, draft in drafts.items()
        }
        problems = (
            mapping_problems(parse_mapping({"version": 1, "tables": runnable}), conn) if runnable else []
        )
        changed = False
        for line in problems:
            match = pattern.match(line)
            if not match or match.group(1) not in drafts:
                continue
            table, column = match.groups()
            columns = drafts[table]["columns"]
            if "todo" in columns.get(column, {}):
                continue
            if "left empty" in line and column not in columns:
                columns[column] = {"todo": line.partition(": ")[2]}
                changed = True
                continue
            if column in columns:
                refused = line.partition(": ")[2]
                columns[column] = {"todo": f"the guess {_inline(columns[column])} did not fit: {refused}"}
                changed = True
        if not changed:
            return


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _inline(guess: dict) -> str:
    return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in guess.items()) + " }"


def _render(drafts: dict[str, dict], skipped: list[str]) -> str:
    todos = sum("todo" in v for d in drafts.values() for v in d["columns"].values())
    lines = [
        "# seed-db mapping drafted by --suggest-mapping (docs/mapping.md explains every key).",
        f"# {todos} column(s) marked todo: fill each in (or remove it if the column may stay empty),",
        "# then check the draft with: prakerja-sim seed-db --db URL --mapping FILE --check",
        "version = 1",
    ]
    for name, draft in drafts.items():
        lines += ["", f"[tables.{_key(name)}]", f"from = {_value(draft['from'])}"]
        if "min_state" in draft:
            lines.append(f"min_state = {_value(draft['min_state'])}")
        lines += ["", f"[tables.{_key(name)}.columns]"]
        for column, guess in draft["columns"].items():
            lines.append(f"{_key(column)} = {_inline(guess)}")
    if skipped:
        lines += ["", "# Not placed (left as they are; map them by hand if the seed should fill them):"]
        lines += [f"#   {name}" for name in skipped]
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)
