"""OTP and truth sources (simulator/surge/sources): each one against the real thing.

SQLite always; PostgreSQL, MariaDB and Redis where PRAKERJA_TEST_POSTGRES_URL,
PRAKERJA_TEST_MARIADB_URL and PRAKERJA_TEST_REDIS_URL are set (skipped otherwise, saying which).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from simulator.errors import InvalidInputFile, TargetUnavailable, UnsafeTarget
from simulator.net import resolve_database
from simulator.surge.reconcile import STEP_COMMITS
from simulator.surge.sources import otp_source, reconcile_truth, snapshot, truth_source
from simulator.surge.sources._common import ReadOnlyDatabase

WHERE_EMAIL = "prof.toml [otp.email]"
WHERE_SMS = "prof.toml [otp.sms]"
WHERE_TRUTH = "prof.toml [reconcile]"


# --- a tiny loopback HTTP server for the outbox and admin-stats shapes ---------------------------------


@contextlib.contextmanager
def json_server(routes):
    """Serve {path: callable(query) -> body} on 127.0.0.1:0; yields (base URL, list of requests seen)."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path, _, query = self.path.partition("?")
            seen.append((path, query, dict(self.headers)))
            body = json.dumps(routes[path](query)).encode() if path in routes else b"{}"
            self.send_response(200 if path in routes else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


OUTBOX = {
    "/v1/sandbox/outbox": lambda query: {
        "messages": [  # newest first, as the reference API and the stand-ins list them
            {"channel": "sms", "code": "222222"},
            {"channel": "email", "code": "111111"},
            {"channel": "email", "code": "000000"},
        ]
        if "to=a%40b.id" in query or "to=0812" in query
        else []
    }
}


def test_outbox_reads_the_newest_code_of_the_channel_over_one_kept_alive_connection():
    with json_server(OUTBOX) as (base, seen):
        source = otp_source({"source": "outbox"}, target=base, upstreams=None, where=WHERE_EMAIL)
        assert source.code("email", "a@b.id") == "111111"
        assert source.code("sms", "0812") == "222222"
        assert source.code("email", "nobody@b.id") is None
        assert [s[0] for s in seen] == ["/v1/sandbox/outbox"] * 3
        assert seen[0][1] == "to=a%40b.id"


def test_upstreams_reads_the_stand_ins_outbox_and_needs_their_url():
    with json_server(OUTBOX) as (base, seen):
        source = otp_source(
            {"source": "upstreams"}, target="http://127.0.0.1:1", upstreams=base, where=WHERE_SMS
        )
        assert source.code("sms", "0812") == "222222"
        explicit = otp_source(
            {"source": "upstreams", "url": base}, target="http://127.0.0.1:1", upstreams=None, where=WHERE_SMS
        )
        assert explicit.code("email", "a@b.id") == "111111"
    with pytest.raises(InvalidInputFile, match=r"^prof.toml: key 'otp.sms.url' is required"):
        otp_source({"source": "upstreams"}, target="http://127.0.0.1:1", upstreams=None, where=WHERE_SMS)


def test_a_source_off_this_machine_is_refused_unless_allowed():
    for spec in (
        {"source": "outbox", "url": "http://otp.example.invalid"},
        {
            "source": "sql",
            "url": "postgresql://u@db.example.invalid/x",
            "query": "SELECT c FROM t WHERE a = :address",
        },
        {
            "source": "sql",
            "url": "mysql://u@db.example.invalid/x",
            "query": "SELECT c FROM t WHERE a = :address",
        },
        {"source": "redis", "url": "redis://cache.example.invalid:6379/0", "key": "otp:{address}"},
    ):
        with pytest.raises(
            UnsafeTarget, match=r"db.example.invalid|otp.example.invalid|cache.example.invalid"
        ):
            otp_source(spec, target="http://127.0.0.1:1", upstreams=None, where=WHERE_EMAIL)
    with pytest.raises(UnsafeTarget, match="--allow-remote"):
        truth_source(
            {
                "source": "sql",
                "url": "postgresql://u@db.example.invalid/x",
                "counts": {"join": "SELECT COUNT(*) FROM t"},
            },
            target="http://127.0.0.1:1",
            where=WHERE_TRUTH,
        )
    # The target itself (--host) was guarded by the run with its own --allow-remote: not again here.
    assert otp_source(
        {"source": "outbox"}, target="http://otp.example.invalid", upstreams=None, where=WHERE_EMAIL
    )
    # Allowed: nothing is connected to when the source is made (the URL is only resolved).
    allowed = otp_source(
        {"source": "outbox", "url": "http://otp.example.invalid"},
        target="http://127.0.0.1:1",
        upstreams=None,
        where=WHERE_EMAIL,
        allow_remote=True,
    )
    assert allowed is not None


def test_fixed_code():
    source = otp_source(
        {"source": "fixed", "code": "123456"}, target="http://127.0.0.1:1", upstreams=None, where=WHERE_SMS
    )
    assert source.code("sms", "0812") == "123456"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": "pigeon"}, r"key 'otp.email.source': expected one of \"outbox\""),
        ({"source": "fixed"}, r"key 'otp.email.code' is required"),
        ({"source": "fixed", "code": 123456}, r"key 'otp.email.code': expected the code .*got 123456"),
        ({"source": "fixed", "code": "1", "url": "x"}, r"unknown key 'otp.email.url'"),
        ({"source": "outbox", "url": "ftp://x"}, r"key 'otp.email.url': expected a URL like http"),
        ({"source": "sql", "query": "SELECT 1"}, r"key 'otp.email.url' is required"),
        ({"source": "sql", "url": "sqlite:///x.db"}, r"key 'otp.email.query' is required"),
        (
            {"source": "sql", "url": "sqlite:///x.db", "query": "DELETE FROM otp"},
            r"key 'otp.email.query': expected one SQL SELECT query",
        ),
        (
            {"source": "sql", "url": "sqlite:///x.db", "query": "SELECT 1; DROP TABLE otp"},
            r"key 'otp.email.query': expected one SQL SELECT query",
        ),
        (
            {"source": "sql", "url": "sqlite:///x.db", "query": "SELECT kode FROM otp"},
            r"key 'otp.email.query': expected a query using the :address parameter",
        ),
        (
            {"source": "sql", "url": "sqlite:///x.db", "query": "SELECT kode FROM otp WHERE a = :addr"},
            r"key 'otp.email.query': expected bind parameters among :address, :channel, not :addr",
        ),
        (
            {"source": "sql", "url": "oracle://x/y", "query": "SELECT k FROM t WHERE a = :address"},
            r"prof.toml: key 'otp.email.url'.*unsupported database URL scheme 'oracle'",
        ),
        (
            {
                "source": "sql",
                "url_env": "PRAKERJA_NO_SUCH_VARIABLE",
                "query": "SELECT k FROM t WHERE a = :address",
            },
            r"key 'otp.email.url_env': environment variable PRAKERJA_NO_SUCH_VARIABLE is not set",
        ),
        ({"source": "redis", "url": "redis://127.0.0.1:6379/5"}, r"key 'otp.email.key' is required"),
        (
            {"source": "redis", "url": "redis://127.0.0.1:6379/5", "key": "otp:{email}"},
            r"key 'otp.email.key': expected a key template using \{address\}",
        ),
        (
            {"source": "redis", "url": "redis://127.0.0.1:6379/5", "key": "otp:{address}", "type": "hash"},
            r"key 'otp.email.type': expected \"string\" \(GET\) or \"list\"",
        ),
        (
            {"source": "redis", "url": "http://127.0.0.1", "key": "otp:{address}"},
            r"key 'otp.email.url': expected a URL like redis://",
        ),
    ],
)
def test_each_bad_otp_spec_is_one_line_naming_file_table_and_key(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sqlite3.connect(tmp_path / "x.db").close()
    with pytest.raises(InvalidInputFile, match=r"^prof\.toml: .*" + message.split("prof.toml: ")[-1]) as err:
        otp_source(spec, target="http://127.0.0.1:1", upstreams=None, where=WHERE_EMAIL)
    assert "\n" not in str(err.value)


# --- SQL on each engine -----------------------------------------------------------------------------


def _sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'otp.db'}"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request, tmp_path):
    """An engine's URL with a fresh table ``otp_<random>`` (dropped afterwards); skip without its URL."""
    if request.param == "sqlite":
        url = _sqlite_url(tmp_path)
    else:
        env = {"postgresql": "PRAKERJA_TEST_POSTGRES_URL", "mariadb": "PRAKERJA_TEST_MARIADB_URL"}[
            request.param
        ]
        url = os.environ.get(env)
        if not url:
            pytest.skip(f"{env} is not set (CI sets it; see README)")
    table = f"otp_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(resolve_database(url).url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, channel VARCHAR(8), "
                "address VARCHAR(64), code VARCHAR(8))"
            )
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {table} VALUES (1, 'email', 'a@b.id', '111111'), "
                "(2, 'sms', '0812', '222222'), (3, 'email', 'a@b.id', '333333')"
            )
        )
    try:
        yield url, table
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        engine.dispose()


def test_sql_reads_the_newest_code_over_a_read_only_connection(database_url):
    url, table = database_url
    spec = {
        "source": "sql",
        "url": url,
        "query": f"SELECT code FROM {table} WHERE address = :address AND channel = :channel ORDER BY id DESC",
    }
    email = otp_source(spec, target="http://127.0.0.1:1", upstreams=None, where=WHERE_EMAIL)
    sms = otp_source(spec, target="http://127.0.0.1:1", upstreams=None, where=WHERE_SMS)
    assert email.code("email", "a@b.id") == "333333"
    assert sms.code("sms", "0812") == "222222"
    assert email.code("email", "nobody@b.id") is None
    # The connection refuses writes, whatever the query says (the engine's own read-only mode).
    db = ReadOnlyDatabase(url, option="test", allow_remote=False)
    with pytest.raises(TargetUnavailable, match="the query failed"):
        db.scalar(f"INSERT INTO {table} VALUES (9, 'sms', 'x', '9')", {})
    db.close()
    assert email.code("email", "a@b.id") == "333333"


def test_sql_truth_counts_and_reconciles(database_url):
    url, table = database_url
    spec = {
        "source": "sql",
        "url": url,
        "counts": {
            "create_account": f"SELECT COUNT(*) FROM {table} WHERE channel = 'email'",
            "verify_phone": f"SELECT COUNT(*) FROM {table} WHERE channel = 'sms'",
        },
        "wave": {"joined": f"SELECT COUNT(*) FROM {table} WHERE id > :wave", "quota": "SELECT 2"},
    }
    source = truth_source(
        spec, target="http://127.0.0.1:1", where=WHERE_TRUTH, steps=["create_account", "verify_phone", "join"]
    )
    before = snapshot(source, 1)
    assert before == {
        "steps": {"create_account": 2, "verify_phone": 1},
        "waves": {"1": {"joined": 2, "quota": 2}},
    }
    engine = sa.create_engine(resolve_database(url).url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES (4, 'email', 'c@b.id', '4'), (5, 'email', 'd@b.id', '5')")
        )
    engine.dispose()
    after = snapshot(source, 1)
    ok = reconcile_truth(
        source, {"create_account": 2, "verify_phone": 0}, {}, before, after, wave=1, quota=2, selection="fcfs"
    )
    assert ok.available and all(step.ok for step in ok.steps), ok
    assert [(s.step, s.committed) for s in ok.steps] == [("create_account", 2), ("verify_phone", 0)]
    # 4 joins for a quota of 2 in a first-come-first-served wave: 2 over, the run is not OK.
    assert ok.wave["joined"] == 4 and not ok.wave["ok"] and ok.mismatches == 2 and not ok.ok
    fine = reconcile_truth(
        source,
        {"create_account": 2, "verify_phone": 0},
        {},
        before,
        after,
        wave=1,
        quota=2,
        selection="random",
    )
    assert fine.ok, fine
    lost = reconcile_truth(
        source, {"create_account": 3}, {}, before, after, wave=1, quota=10, selection="random"
    )
    assert not lost.ok and lost.steps[0].missing == 1


def test_a_query_the_database_cannot_run_is_one_line_before_any_load(tmp_path):
    url = _sqlite_url(tmp_path)
    with sqlite3.connect(tmp_path / "otp.db") as conn:
        conn.execute("CREATE TABLE codes (address TEXT, code TEXT)")
    otp = {"source": "sql", "url": url, "query": "SELECT kode FROM codes WHERE address = :address"}
    with pytest.raises(
        InvalidInputFile,
        match=r"^prof\.toml: key 'otp\.email\.query': expected a query the "
        r"database can run: .*no such column: kode",
    ) as err:
        otp_source(otp, target="http://127.0.0.1:1", upstreams=None, where=WHERE_EMAIL)
    assert "\n" not in str(err.value)
    truth = {"source": "sql", "url": url, "counts": {"join": "SELECT COUNT(*) FROM members"}}
    match = r"^prof\.toml: key 'reconcile\.counts\.join': .*no such table"
    with pytest.raises(InvalidInputFile, match=match):
        truth_source(truth, target="http://127.0.0.1:1", where=WHERE_TRUTH)


def test_truth_specs_one_line_each(tmp_path):
    url = _sqlite_url(tmp_path)
    sqlite3.connect(tmp_path / "otp.db").close()
    cases = [
        ({"source": "stats"}, r"key 'reconcile.source': expected one of \"admin-stats\", \"sql\", \"off\""),
        ({"source": "off", "url": url}, r"unknown key 'reconcile.url'"),
        ({"source": "sql", "url": url}, r"key 'reconcile.counts': expected a table of step"),
        (
            {"source": "sql", "url": url, "counts": {"joinn": "SELECT 1"}},
            r"key 'reconcile.counts.joinn': expected a step of the profile",
        ),
        (
            {"source": "sql", "url": url, "counts": {"join": "UPDATE t SET x = 1"}},
            r"key 'reconcile.counts.join': expected one SQL SELECT query",
        ),
        (
            {"source": "sql", "url": url, "counts": {"join": "SELECT 1"}, "wave": {"quota": "SELECT 1"}},
            r"key 'reconcile.wave.joined' is required",
        ),
        (
            {"source": "sql", "url": url, "counts": {"join": "SELECT 1"}, "wave": {"joined": "SELECT :x"}},
            r"key 'reconcile.wave.joined': expected bind parameters among :wave, not :x",
        ),
    ]
    for spec, message in cases:
        with pytest.raises(InvalidInputFile, match=r"^prof\.toml: " + message) as err:
            truth_source(
                spec, target="http://127.0.0.1:1", where=WHERE_TRUTH, steps=["create_account", "join"]
            )
        assert "\n" not in str(err.value)


def test_off_is_not_reconciled_never_ok():
    source = truth_source({"source": "off"}, target="http://127.0.0.1:1", where=WHERE_TRUTH)
    assert source.counts() is None and snapshot(source, 1) is None
    result = reconcile_truth(source, {"join": 3}, {}, None, None, wave=1, quota=5, selection="fcfs")
    assert not result.available and not result.ok and "off" in result.reason


def test_admin_stats_reads_the_reference_counts_as_reconcile_does():
    stats = {
        "steps": {key: 10 + i for i, key in enumerate(STEP_COMMITS.values())},
        "waves": {"3": {"joined": 4, "quota": 5, "mode": "fcfs"}},
    }
    with json_server({"/v1/admin/stats": lambda query: stats}) as (base, seen):
        source = truth_source({"source": "admin-stats"}, target=base, where=WHERE_TRUTH)
        counts = source.counts()
        assert counts == {step: stats["steps"][key] for step, key in STEP_COMMITS.items()}
        assert source.wave(3) == {"joined": 4, "quota": 5, "mode": "fcfs"}
        assert seen[0][1] == "max_age_s=0"
        before = snapshot(source, 3)
        result = reconcile_truth(source, {}, {}, before, before, wave=3, quota=5, selection="fcfs")
        assert result.ok and result.wave["joined"] == 4
    with json_server({}) as (base, _seen):
        source = truth_source({"source": "admin-stats"}, target=base, where=WHERE_TRUTH)
        assert source.counts() is None and "does not offer /v1/admin/stats" in source.reason


# --- Redis ----------------------------------------------------------------------------------------------


def test_an_unreachable_redis_is_one_line_when_the_source_is_made():
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = {"source": "redis", "url": f"redis://127.0.0.1:{port}/5", "key": "otp:{address}"}
    with pytest.raises(
        TargetUnavailable, match=r"^prof\.toml: key 'otp\.sms\.url': cannot use the Redis server"
    ) as err:
        otp_source(spec, target="http://127.0.0.1:1", upstreams=None, where=WHERE_SMS)
    assert "\n" not in str(err.value)


@pytest.fixture
def redis_url():
    url = os.environ.get("PRAKERJA_TEST_REDIS_URL")
    if not url:
        pytest.skip("PRAKERJA_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/5)")
    return url


def test_redis_string_and_list_keys(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = f"prakerja-test-{uuid.uuid4().hex[:8]}"
    try:
        client.set(f"{prefix}:email:a@b.id", "444444")
        client.lpush(f"{prefix}:sms:0812", "1", "2", "555555")  # LPUSH: the newest at the head
        client.rpush(f"{prefix}:tail:0812", "1", "666666")
        string = otp_source(
            {"source": "redis", "url": redis_url, "key": prefix + ":{channel}:{address}"},
            target="http://127.0.0.1:1",
            upstreams=None,
            where=WHERE_EMAIL,
        )
        assert string.code("email", "a@b.id") == "444444"
        assert string.code("email", "nobody@b.id") is None
        head = otp_source(
            {"source": "redis", "url": redis_url, "key": prefix + ":{channel}:{address}", "type": "list"},
            target="http://127.0.0.1:1",
            upstreams=None,
            where=WHERE_SMS,
        )
        assert head.code("sms", "0812") == "555555"
        tail = otp_source(
            {
                "source": "redis",
                "url": redis_url,
                "key": prefix + ":tail:{address}",
                "type": "list",
                "newest": "tail",
            },
            target="http://127.0.0.1:1",
            upstreams=None,
            where=WHERE_SMS,
        )
        assert tail.code("sms", "0812") == "666666"
    finally:
        for key in client.scan_iter(prefix + ":*"):
            client.delete(key)
        client.close()


# --- inside a gevent-patched Locust worker ----------------------------------------------------------------

GREEN = """
from gevent import monkey

monkey.patch_all()
import sys

import gevent

from simulator.surge.sources import otp_source

url, sleep = sys.argv[1], sys.argv[2]
spec = {"source": "sql", "url": url, "query": f"SELECT :address WHERE {sleep} IS NOT NULL"}
source = otp_source(spec, target="http://127.0.0.1:1", upstreams=None, where="p.toml [otp.email]")
order = []
slow = gevent.spawn(lambda: order.append(("query", source.code("email", "a@b.id"))))
gevent.sleep(0)  # the query is on the wire now
quick = gevent.spawn(lambda: order.append(("other greenlet", None)))
gevent.joinall([slow, quick])
print(order)
"""


@pytest.mark.parametrize(
    ("env", "sleep"),
    [("PRAKERJA_TEST_POSTGRES_URL", "pg_sleep(1.5)"), ("PRAKERJA_TEST_MARIADB_URL", "SLEEP(1.5)")],
    ids=["postgresql", "mariadb"],
)
def test_a_query_yields_to_other_greenlets_under_gevent(env, sleep):
    """While one journey waits on the database, the worker's other journeys go on (the driver cooperates)."""
    import subprocess
    import sys

    url = os.environ.get(env)
    if not url:
        pytest.skip(f"{env} is not set (CI sets it; see README)")
    done = subprocess.run(
        [sys.executable, "-c", GREEN, url, sleep], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('other greenlet', None), ('query', 'a@b.id')]", done.stdout + done.stderr
