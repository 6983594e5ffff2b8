"""The remote guard of ``seed-db``, ``serve --db`` and ``surge --host`` decides on every host the
driver would really use, and refuses before any connection (names under ``.invalid`` only)."""

from __future__ import annotations

import socket

import pytest

from simulator.cli import main
from simulator.errors import InvalidOption, UnsafeTarget
from simulator.net import check_database, resolve_database
from simulator.seed.target import parse_target
from simulator.surge.runner import check_target

ELSEWHERE = "db.invalid"  # reserved: never resolves, so nothing leaves the machine


@pytest.fixture
def no_connections(monkeypatch):
    """Fail the test if anything opens a network connection."""

    def refuse(self, address):
        raise AssertionError(f"a connection was opened to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _service_file(tmp_path, host: str) -> str:
    path = tmp_path / "pg_service.conf"
    path.write_text(f"# QA staging\n[qa]\nhost={host}\nport=5432\ndbname=qa\n", encoding="utf-8")
    return str(path)


def _option_file(tmp_path, host: str) -> str:
    path = tmp_path / "my.cnf"
    path.write_text(f"[client]\nhost={host}\nport=3306\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("db", "env", "source"),
    [
        (f"postgresql://postgres@127.0.0.1:5432/qa?host={ELSEWHERE}", {}, "the URL"),
        (f"postgresql://postgres@127.0.0.1:5432/qa?hostaddr={ELSEWHERE}", {}, "the URL"),
        (f"postgresql://postgres@127.0.0.1:5432,{ELSEWHERE}:5432/qa", {}, "the URL"),
        ("postgresql://postgres@/qa", {"PGHOST": ELSEWHERE}, "PGHOST"),
        ("postgresql://postgres@127.0.0.1/qa", {"PGHOSTADDR": ELSEWHERE}, "PGHOSTADDR"),
        (f"mysql://root@127.0.0.1:3306/qa?host={ELSEWHERE}", {}, "?host="),
        (f"mariadb://root@{ELSEWHERE}/qa", {}, "the URL"),
    ],
)
def test_every_host_the_driver_would_use_is_checked(db, env, source, no_connections):
    with pytest.raises(UnsafeTarget, match="--allow-remote") as refused:
        parse_target(db, environ=env)
    assert f"'{ELSEWHERE}' (from {source}" in str(refused.value)


def test_a_postgres_service_is_read_as_libpq_reads_it(tmp_path, no_connections):
    env = {"PGSERVICEFILE": _service_file(tmp_path, ELSEWHERE), "PGSERVICE": "qa"}
    with pytest.raises(UnsafeTarget, match="service 'qa'"):
        parse_target("postgresql://postgres@/qa", environ=env)
    with pytest.raises(UnsafeTarget, match="service 'qa'"):
        parse_target("postgresql://postgres@/qa?service=qa", environ={"PGSERVICEFILE": env["PGSERVICEFILE"]})
    # The URL's own host wins over the service's, as in libpq.
    assert parse_target("postgresql://postgres@127.0.0.1/qa", environ=env).kind == "postgresql"
    # A service the guard cannot see is refused rather than left to libpq.
    only_the_file = {"PGSERVICEFILE": env["PGSERVICEFILE"]}
    with pytest.raises(InvalidOption, match="service 'staging' is not defined"):
        parse_target("postgresql://postgres@/qa?service=staging", environ=only_the_file)


def test_a_mysql_option_file_is_read_as_pymysql_reads_it(tmp_path, no_connections):
    option_file = _option_file(tmp_path, ELSEWHERE)
    with pytest.raises(UnsafeTarget, match=r"\[client\] in"):
        parse_target(f"mysql://root@/qa?read_default_file={option_file}", environ={})
    # PyMySQL lets the URL's host win over the file's; the pinned URL names it.
    target = parse_target(f"mysql://root@127.0.0.1/qa?read_default_file={option_file}", environ={})
    assert target.url.host == "127.0.0.1"


def test_the_driver_gets_the_resolved_hosts_pinned(no_connections):
    # PGHOST fills in what the URL leaves out; the URL handed to the driver says it explicitly.
    target = parse_target("postgresql://postgres@/qa", environ={"PGHOST": "localhost", "PGPORT": "5433"})
    assert target.url.query["host"] == "localhost" and target.url.query["port"] == "5433"
    # A multi-host URL of local hosts is read (it used to end in a ValueError traceback).
    target = parse_target("postgresql://postgres@127.0.0.1:5432,localhost:5433/qa", environ={})
    assert target.url.query["host"] == "127.0.0.1,localhost" and target.url.query["port"] == "5432,5433"
    assert target.label == "postgresql://postgres@127.0.0.1:5432,localhost:5433/qa"
    # MYSQL_HOST is not read by PyMySQL, and the pinned host leaves it no say anyway.
    target = parse_target("mysql://root:secret@127.0.0.1/qa", environ={"MYSQL_HOST": ELSEWHERE})
    assert target.url.host == "127.0.0.1" and "secret" not in target.label


@pytest.mark.parametrize(
    "db",
    [
        "postgresql://postgres@/qa",  # libpq's default Unix socket
        "postgresql://postgres@/qa?host=/var/run/postgresql",
        f"mysql://root@{ELSEWHERE}/qa?unix_socket=/run/mysqld/mysqld.sock",  # PyMySQL uses the socket
    ],
)
def test_unix_sockets_are_local(db, no_connections):
    assert all(e.is_local() for e in resolve_database(db, environ={}).endpoints)
    check_database(db, allow_remote=False, environ={})


def test_allow_remote_lets_a_remote_host_through(no_connections):
    target = parse_target(f"postgresql://postgres@{ELSEWHERE}/qa", allow_remote=True, environ={})
    assert target.url.query["host"] == ELSEWHERE


def test_seed_db_refuses_in_one_line_before_connecting(capsys, monkeypatch, no_connections):
    monkeypatch.setenv("PGHOSTADDR", ELSEWHERE)
    with pytest.raises(SystemExit) as exit_:
        main(["seed-db", "--db", "postgresql://postgres@127.0.0.1/qa", "--size", "10"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "PGHOSTADDR" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_multi_host_mysql_url_is_one_clear_line(capsys, no_connections):
    with pytest.raises(SystemExit) as exit_:
        main(["seed-db", "--db", f"mysql://root@127.0.0.1:3306,{ELSEWHERE}:3306/qa", "--size", "10"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "names several hosts" in err and "Traceback" not in err


def test_serve_checks_its_database_with_the_same_guard(capsys, monkeypatch, no_connections):
    monkeypatch.setenv("PGHOST", ELSEWHERE)
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--db", "postgresql://postgres@/qa"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"'{ELSEWHERE}' (from PGHOST)" in err and "Traceback" not in err


def test_surge_checks_its_host_with_the_same_guard(no_connections):
    with pytest.raises(UnsafeTarget, match=f"'{ELSEWHERE}'"):
        check_target(f"http://{ELSEWHERE}:8000", allow_remote=False)
    assert check_target("http://127.0.0.1:8000/", allow_remote=False) == "http://127.0.0.1:8000"
    with pytest.raises(InvalidOption, match="not a number"):
        check_target("http://127.0.0.1:80x0", allow_remote=False)
