"""The one schema of the reference API: every table, on SQLite, PostgreSQL and MariaDB alike.

The API creates it at start (`create_schema`); `seed-db` bulk-loads the same tables directly
(both import it from here, `simulator.database`, so neither imports the other).

How an applicant's funnel state is stored (a seeded row is served as-is, so this is the contract):

=====================  ===========================================================================
step done              row that says so
=====================  ===========================================================================
account created        ``accounts`` row (``password_hash`` from ``simulator.database.passwords``)
email verified         ``accounts.email_verified_at`` not NULL
identity checked       ``identities`` row (its NIK/KK/birth date matched ``residents``)
profile filled         ``profiles`` row
phone verified         ``accounts.phone`` and ``accounts.phone_verified_at`` not NULL
KTP accepted           a ``ktp_uploads`` row with ``verdict = 'accept'``
test finished          ``test_results`` row
joined wave W          ``wave_joins`` row (wave_number=W); ``selected`` NULL until W closes
selected               ``wave_joins.selected = true`` and a ``recipients`` row (state ``selected``)
training bought ...    ``recipients.state`` in ``selected`` < ``training_bought`` < ``finished``,
                       or ``revoked``; ``incentive_months_paid`` 0..4
=====================  ===========================================================================

Conventions: ids of accounts are strings of at most 36 characters (the API makes 32-hex-digit,
time-ordered ids; a seeder may use any unique string, e.g. one derived from ``applicant_id``), so
bulk loads need no sequence fix-up. Timestamps are naive UTC with microseconds. NIK and KK are
16-digit strings (leading zeros kept). Phones are ``08...`` strings.
Schema changes are additive (a new table or a nullable column) and bump ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    delete,
    exc,
    insert,
    select,
)
from sqlalchemy.dialects import mysql, postgresql

SCHEMA_VERSION = 2
"""Bumped on every additive change; kept in the ``schema_meta`` table."""

# MariaDB's DATETIME keeps whole seconds unless asked; fcfs order and stats need microseconds.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

ACCOUNT_ID_LENGTH = 36

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _account_fk(**kwargs) -> Column:
    return Column(
        "account_id",
        String(ACCOUNT_ID_LENGTH),
        ForeignKey("accounts.id", ondelete="CASCADE"),
        **kwargs,
    )


schema_meta = Table(
    "schema_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
    comment="Key/value facts about the schema itself: schema_version.",
)

# --- the simulated Dukcapil registry ------------------------------------------------------------

residents = Table(
    "residents",
    metadata,
    Column("nik", String(16), primary_key=True, comment="16 digits, the person's NIK"),
    Column("kk", String(16), nullable=False, index=True, comment="family card number"),
    Column("birth_date", Date, nullable=False),
    Column("full_name", String(200), nullable=False),
    Column("gender", String(1), nullable=False, comment="L or P"),
    Column("province_code", String(16), nullable=False, comment="Kemendagri code, as in the population"),
    Column("regency_code", String(16), nullable=False),
    Column("district_code", String(16), nullable=False),
    Column("village_code", String(16), nullable=True),
    Column("occupation", String(100), nullable=False, comment="KTP 'Pekerjaan'"),
    Column("is_recipient", Boolean, nullable=False, default=False, comment="already a recipient"),
    Column("receives_other_aid", Boolean, nullable=False, default=False, comment="DTKS/PKH/BPNT, BSU, BPUM"),
    Column("is_priority", Boolean, nullable=False, default=False, comment="proposed by a ministry"),
    comment="What Dukcapil knows: the truth each identity check is matched against.",
)

# --- applicants ---------------------------------------------------------------------------------

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(ACCOUNT_ID_LENGTH), primary_key=True),
    Column("email", String(254), nullable=False, unique=True, comment="lower-cased"),
    Column("name", String(200), nullable=False),
    Column("password_hash", String(255), nullable=False, comment="argon2id, simulator.database.passwords"),
    Column("email_verified_at", Timestamp, nullable=True),
    Column("phone", String(20), nullable=True, unique=True, comment="08..., set by POST /v1/me/phone"),
    Column("phone_verified_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    comment="One row per sign-up. NULL *_verified_at means that step is not done.",
)

identities = Table(
    "identities",
    metadata,
    _account_fk(primary_key=True),
    Column("nik", String(16), nullable=False, unique=True, comment="one account per NIK"),
    Column("kk", String(16), nullable=False, index=True),
    Column("birth_date", Date, nullable=False),
    Column("checked_at", Timestamp, nullable=False, comment="when the registry matched it"),
    comment="A row only for an identity the registry matched and eligibility allowed.",
)

profiles = Table(
    "profiles",
    metadata,
    _account_fk(primary_key=True),
    Column("address", String(300), nullable=False),
    Column("province_code", String(16), nullable=False, comment="domicile; waves may be limited to it"),
    Column("regency_code", String(16), nullable=True),
    Column("district_code", String(16), nullable=True),
    Column("village_code", String(16), nullable=True),
    Column("postal_code", String(10), nullable=True),
    Column("education", String(50), nullable=False),
    Column("employment_status", String(50), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    comment="Personal data of step 3.",
)

ktp_uploads = Table(
    "ktp_uploads",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    _account_fk(nullable=False, index=True),
    Column("verdict", String(40), nullable=False, comment="'accept' or a Reason code"),
    Column("filename", String(255), nullable=True),
    Column("content_type", String(100), nullable=True),
    Column("size_bytes", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    comment="Every KTP upload that was read to the end and judged (the image bytes are not kept).",
)

test_results = Table(
    "test_results",
    metadata,
    _account_fk(primary_key=True),
    Column("answers", String(64), nullable=False, comment="18 answers, one letter each"),
    Column("score", SmallInteger, nullable=False, comment="correct answers, 0..18"),
    Column("completed_at", Timestamp, nullable=False),
    comment="The basic-skills test; taken once, kept across waves.",
)

# --- waves, joins, selection --------------------------------------------------------------------

waves = Table(
    "waves",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("quota", Integer, nullable=False),
    Column("mode", String(10), nullable=False, comment="lottery or fcfs"),
    Column("opens_at", Timestamp, nullable=False),
    Column("closes_at", Timestamp, nullable=False),
    Column("state", String(10), nullable=False, default="open", comment="open or closed"),
    Column(
        "province_codes",
        Text,
        nullable=True,
        comment="comma-separated domicile provinces this wave takes; NULL = everyone",
    ),
    Column(
        "joined_count",
        Integer,
        nullable=False,
        default=0,
        comment="joins so far; in fcfs the conditional UPDATE of it is what enforces the quota",
    ),
    Column("selected_count", Integer, nullable=False, default=0),
    Column("selection_seed", BigInteger, nullable=False, default=0, comment="lottery RNG seed"),
    Column("created_at", Timestamp, nullable=False),
    Column("closed_at", Timestamp, nullable=True),
    CheckConstraint("mode IN ('lottery', 'fcfs')", name="mode"),
    CheckConstraint("state IN ('open', 'closed')", name="state"),
    CheckConstraint("quota >= 0", name="quota"),
    comment="A wave (gelombang). Joins are taken while state='open' and opens_at <= now < closes_at.",
)

wave_joins = Table(
    "wave_joins",
    metadata,
    Column("wave_number", Integer, ForeignKey("waves.number", ondelete="CASCADE"), primary_key=True),
    _account_fk(primary_key=True),
    Column("joined_at", Timestamp, nullable=False),
    Column("join_order", Integer, nullable=False, comment="1-based position in the wave (fcfs order)"),
    Column("carried_over_from", Integer, nullable=True, comment="wave that did not select them"),
    Column("selected", Boolean, nullable=True, comment="NULL until the wave closes"),
    Index(None, "wave_number", "join_order"),
    Index(None, "account_id"),
    comment="Who joined which wave; the primary key makes a second join a 409.",
)

recipients = Table(
    "recipients",
    metadata,
    _account_fk(primary_key=True),
    Column("wave_number", Integer, ForeignKey("waves.number"), nullable=False, index=True),
    Column("kk", String(16), nullable=False, index=True, comment="for the 2-per-family-card limit"),
    Column("priority", Boolean, nullable=False, default=False),
    Column(
        "state",
        String(20),
        nullable=False,
        default="selected",
        comment="selected, training_bought, finished or revoked",
    ),
    Column("selected_at", Timestamp, nullable=False),
    Column("training_bought_at", Timestamp, nullable=True),
    Column("training_finished_at", Timestamp, nullable=True),
    Column("incentive_months_paid", SmallInteger, nullable=False, default=0, comment="0..4 x Rp600,000"),
    Column("revoked_at", Timestamp, nullable=True),
    CheckConstraint("state IN ('selected', 'training_bought', 'finished', 'revoked')", name="state"),
    comment="Accepted applicants (SK) and what became of them after selection.",
)

# --- plumbing: OTPs, idempotency, counters ------------------------------------------------------

otps = Table(
    "otps",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    _account_fk(nullable=False),
    Column("channel", String(5), nullable=False, comment="email or sms"),
    Column("destination", String(254), nullable=False, comment="the email address or the phone"),
    Column("code", String(8), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("deliver_at", Timestamp, nullable=False, comment="simulated delivery delay"),
    Column("expires_at", Timestamp, nullable=False),
    Column("lost", Boolean, nullable=False, default=False, comment="simulated SMS loss: never arrives"),
    Column("attempts", SmallInteger, nullable=False, default=0),
    Column("consumed_at", Timestamp, nullable=True),
    CheckConstraint("channel IN ('email', 'sms')", name="channel"),
    Index(None, "account_id", "channel", "created_at"),
    Index(None, "destination", "created_at"),
    comment="One-time codes sent; the sandbox outbox reads this table.",
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True, comment="scope + Idempotency-Key header"),
    Column("fingerprint", String(64), nullable=False, comment="sha256 of method, path, body"),
    Column("status_code", SmallInteger, nullable=False),
    Column("response_body", LargeBinary, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    comment="Answers to POSTs that carried an Idempotency-Key, replayed on a retry.",
)

outcome_counts = Table(
    "outcome_counts",
    metadata,
    Column("worker", String(64), primary_key=True, comment="the server process that counted"),
    Column("step", String(32), primary_key=True),
    Column("outcome", String(40), primary_key=True, comment="'accept' or a Reason code"),
    Column("count", BigInteger, nullable=False, default=0),
    comment="Answers given per step and outcome, summed by GET /v1/admin/stats.",
)

attempt_budgets = Table(
    "attempt_budgets",
    metadata,
    Column("subject", String(80), primary_key=True, comment="what is limited: kind + hash of the key"),
    Column("window_start", Timestamp, primary_key=True, comment="start of the fixed window counted"),
    Column("used", Integer, nullable=False, comment="attempts spent in the window"),
    comment="Failed logins and wrong OTP guesses per account, phone or client and window (schema 2).",
)


# PostgreSQL compares every string column byte by byte (collation "C"): the keys are ASCII and
# nothing here sorts text, so behaviour is unchanged, but B-trees over NIK, KK, e-mail, phone and
# account ids are built and searched with memcmp and abbreviated keys instead of strcoll (about
# 45% less CPU to build them: seed-db builds 18). All of them, so no join mixes two collations.
for _column in [c for table in metadata.tables.values() for c in table.columns]:
    if isinstance(_column.type, String):
        _length = _column.type.length
        _column.type = _column.type.with_variant(
            postgresql.VARCHAR(_length, collation="C") if _length else postgresql.TEXT(collation="C"),
            "postgresql",
        )


def utcnow() -> dt.datetime:
    """Now as the schema stores timestamps: naive UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def create_schema(engine_or_url: Engine | str) -> Engine:
    """Create every table that is missing (idempotent) and record ``SCHEMA_VERSION``.

    Accepts an engine or a database URL (normalised by `simulator.database.db.make_engine`).
    Returns the engine used.
    """
    from simulator.database.db import make_engine  # late: db imports this module

    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        metadata.create_all(engine, checkfirst=True)
    except exc.DBAPIError:
        # Several workers starting at once race on CREATE TABLE; the loser retries the check.
        metadata.create_all(engine, checkfirst=True)
    with engine.connect() as conn:
        current = conn.execute(
            select(schema_meta.c.value).where(schema_meta.c.name == "schema_version")
        ).scalar_one_or_none()
        conn.rollback()
    if current is None or int(current) < SCHEMA_VERSION:
        try:
            with engine.begin() as conn:
                conn.execute(delete(schema_meta).where(schema_meta.c.name == "schema_version"))
                conn.execute(insert(schema_meta).values(name="schema_version", value=str(SCHEMA_VERSION)))
        except exc.IntegrityError:
            pass  # another worker recorded it at the same moment
    return engine
