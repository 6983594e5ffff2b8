"""Two foreign schemas for the mapping tests, made with SQLAlchemy on any engine, and their mappings.

``django``: auth_user + a profile + waves + wave membership, integer keys, pbkdf2_sha256 passwords.
``laravel``: users (bcrypt ``$2y$``) + a roles lookup + registrations keyed by UUID.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

Uuid = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
Stamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def django_schema() -> sa.MetaData:
    meta = sa.MetaData()
    sa.Table(
        "auth_user", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("password", sa.String(128), nullable=False),
        sa.Column("last_login", Stamp, nullable=True),
        sa.Column("is_superuser", sa.Boolean, nullable=False),
        sa.Column("username", sa.String(150), nullable=False, unique=True),
        sa.Column("first_name", sa.String(150), nullable=False),
        sa.Column("last_name", sa.String(150), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("is_staff", sa.Boolean, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("date_joined", Stamp, nullable=False),
    )  # fmt: skip
    sa.Table(
        "peserta_profil", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("auth_user.id"), nullable=False, unique=True),
        sa.Column("nik", sa.String(16), nullable=False, unique=True),
        sa.Column("no_kk", sa.String(16), nullable=False),
        sa.Column("tgl_lahir", sa.Date, nullable=False),
        sa.Column("jenis_kelamin", sa.String(1), nullable=False),
        sa.Column("alamat", sa.String(300), nullable=False),
        sa.Column("no_hp", sa.String(20), nullable=True),
    )  # fmt: skip
    sa.Table(
        "gelombang", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("nomor", sa.Integer, nullable=False, unique=True),
        sa.Column("dibuka", Stamp, nullable=False),
        sa.Column("ditutup", Stamp, nullable=False),
        sa.Column("kuota", sa.Integer, nullable=False),
    )  # fmt: skip
    sa.Table(
        "keanggotaan_gelombang", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("auth_user.id"), nullable=False),
        sa.Column("gelombang_id", sa.Integer, sa.ForeignKey("gelombang.id"), nullable=False),
        sa.Column("bergabung_pada", Stamp, nullable=False),
        sa.Column("terpilih", sa.Boolean, nullable=True),
        sa.UniqueConstraint("user_id", "gelombang_id"),
        sa.Index("ix_keanggotaan_gelombang", "gelombang_id"),
    )  # fmt: skip
    return meta


DJANGO_MAPPING = """
version = 1

[tables.auth_user]
from = "accounts"

[tables.auth_user.columns]
id = { sequence = 1 }
password = { password = "pbkdf2_sha256" }
last_login = { copy = "email_verified_at", null = 0.25 }
is_superuser = false
username = { copy = "email" }
first_name = { copy = "full_name", case = "title", max_length = 150 }
last_name = ""
email = { copy = "email" }
is_staff = false
is_active = true
date_joined = { copy = "created_at" }

[tables.peserta_profil]
from = "accounts"
min_state = "identity_verified"

[tables.peserta_profil.columns]
id = { sequence = 1 }
user_id = { ref = "auth_user.id" }
nik = { copy = "nik" }
no_kk = { copy = "kk" }
tgl_lahir = { copy = "birth_date" }
jenis_kelamin = { copy = "gender" }
alamat = { copy = "profile_address" }
no_hp = { copy = "verified_phone", phone = "08" }

[tables.gelombang]
from = "waves"

[tables.gelombang.columns]
id = { sequence = 100 }
nomor = { copy = "number" }
dibuka = { copy = "opens_at" }
ditutup = { copy = "closes_at" }
kuota = { copy = "quota" }

[tables.keanggotaan_gelombang]
from = "wave_joins"

[tables.keanggotaan_gelombang.columns]
id = { sequence = 1 }
user_id = { ref = "auth_user.id" }
gelombang_id = { ref = "gelombang.id" }
bergabung_pada = { copy = "joined_at" }
terpilih = { copy = "selected" }
"""


def laravel_schema() -> sa.MetaData:
    meta = sa.MetaData()
    sa.Table(
        "roles", meta,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False, unique=True),
    )  # fmt: skip
    sa.Table(
        "users", meta,
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("role_id", sa.BigInteger, sa.ForeignKey("roles.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("email", sa.String(255), nullable=False, unique=True),
        sa.Column("email_verified_at", Stamp, nullable=True),
        sa.Column("password", sa.String(255), nullable=False),
        sa.Column("phone", sa.String(20), nullable=True, unique=True),
        sa.Column("remember_token", sa.String(100), nullable=True),
        sa.Column("created_at", Stamp, nullable=True),
        sa.Column("updated_at", Stamp, nullable=True),
    )  # fmt: skip
    sa.Table(
        "registrations", meta,
        sa.Column("id", Uuid, primary_key=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("nik", sa.String(16), nullable=False, unique=True),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("wave", sa.SmallInteger, nullable=True),
        sa.Column("submitted_at", Stamp, nullable=False),
        sa.Column("created_at", Stamp, nullable=True),
        sa.Column("updated_at", Stamp, nullable=True),
        sa.Index("registrations_status_index", "status"),
    )  # fmt: skip
    return meta


LARAVEL_MAPPING = """
version = 1

[tables.roles]
from = "lookup"
rows = [{ id = 1, name = "peserta" }, { id = 2, name = "admin" }]

[tables.users]
from = "accounts"

[tables.users.columns]
id = { sequence = 1 }
role_id = 1
name = { copy = "full_name", case = "title" }
email = { copy = "email" }
email_verified_at = { copy = "email_verified_at" }
password = { password = "bcrypt" }
phone = { copy = "verified_phone", phone = "+62" }
created_at = { copy = "created_at" }
updated_at = { copy = "created_at" }

[tables.registrations]
from = "accounts"
min_state = "identity_verified"

[tables.registrations.columns]
id = { uuid = "ordered" }
user_id = { ref = "users.id" }
nik = { copy = "nik" }
birth_date = { copy = "birth_date" }
status = { copy = "state" }
wave = { copy = "wave_number" }
submitted_at = { copy = "identity_checked_at" }
created_at = { copy = "identity_checked_at" }
updated_at = { copy = "identity_checked_at" }
"""

SCHEMAS = {"django": (django_schema, DJANGO_MAPPING), "laravel": (laravel_schema, LARAVEL_MAPPING)}
