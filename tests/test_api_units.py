"""Reference API pieces without a server: selection, fault distributions, URLs, passwords, tokens."""

from __future__ import annotations

import random

import numpy as np
import pytest

from simulator.api.selection import choose
from simulator.api.settings import Delay, Settings
from simulator.database.db import normalize_url
from simulator.database.passwords import hash_password, verify_password
from simulator.errors import InvalidOption


def test_lottery_puts_priority_first_and_is_reproducible():
    n = 200
    priority = np.zeros(n, dtype=bool)
    priority[[5, 50, 150]] = True
    kk_codes = np.arange(n)
    already = np.zeros(n, dtype=np.int64)
    first = choose(priority, kk_codes, already, 10, np.random.default_rng(7))
    again = choose(priority, kk_codes, already, 10, np.random.default_rng(7))
    other = choose(priority, kk_codes, already, 10, np.random.default_rng(8))
    assert first.sum() == 10
    assert first[[5, 50, 150]].all(), "ministry-priority NIKs are drawn before anyone else"
    assert (first == again).all()
    assert not (first == other).all()


def test_selection_respects_two_recipients_per_kk():
    # 6 members of one family card (one already a recipient elsewhere) and 4 singles, quota 10.
    kk_codes = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4])
    already = np.array([1, 0, 0, 0, 0])
    mask = choose(np.zeros(10, dtype=bool), kk_codes, already, 10, np.random.default_rng(1))
    assert mask[:6].sum() == 1, "the family card holds one recipient already: one more place only"
    assert mask[6:].all()


def test_fcfs_takes_joiners_in_order():
    mask = choose(np.zeros(6, dtype=bool), np.arange(6), np.zeros(6, dtype=np.int64), 4, None)
    assert mask.tolist() == [True, True, True, True, False, False]


def test_delay_forms_and_errors():
    rng = random.Random(1)
    assert Delay.parse("fixed:80").sample_ms(rng) == 80
    assert 10 <= Delay.parse("uniform:10,20").sample_ms(rng) <= 20
    draws = sorted(Delay.parse("lognormal:100,0.5").sample_ms(rng) for _ in range(4000))
    assert 90 < draws[2000] < 110, "the median of lognormal:MEDIAN,SIGMA is MEDIAN"
    for bad in ("lognormal:100", "uniform:5,1", "gauss:1,2", "fixed:-1", "fixed:x"):
        with pytest.raises(InvalidOption, match="--registry-latency"):
            Delay.parse(bad, "--registry-latency")


def test_settings_roundtrip_through_the_worker_environment():
    settings = Settings(db_url="x.db", registry_latency=Delay.parse("lognormal:80,0.4"), sms_loss_rate=0.1)
    assert Settings.from_json(settings.to_json()) == settings
    with pytest.raises(InvalidOption, match="rate"):
        Settings(registry_error_rate=1.5)
    with pytest.raises(InvalidOption, match="unknown server setting"):
        Settings.from_mapping({"db": "x"})


def test_database_urls_are_normalised_to_the_shipped_drivers(tmp_path):
    assert normalize_url(tmp_path / "a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("mariadb://root@h/db") == "mysql+pymysql://root@h/db?charset=utf8mb4"
    assert normalize_url("mysql://root@h/db?x=1") == "mysql+pymysql://root@h/db?x=1&charset=utf8mb4"
    with pytest.raises(InvalidOption, match="unsupported"):
        normalize_url("oracle://x")


@pytest.mark.parametrize("cost", [0, 1])
def test_password_hash_verifies_only_the_password(cost):
    hashed = hash_password("rahasia123", cost)
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "rahasia123")
    assert not verify_password(hashed, "rahasia124")
    assert not verify_password("not a hash", "rahasia123")


def test_password_cost_levels_are_checked():
    with pytest.raises(InvalidOption, match="password cost"):
        hash_password("x", 9)


def test_tokens_are_signed_and_expire():
    from simulator.api.auth import TokenSigner

    signer = TokenSigner(b"k" * 32, ttl_s=60)
    token = signer.issue("abc")
    assert signer.account_of(token) == "abc"
    account, expiry, mac = token.split(".")
    assert signer.account_of(f"abd.{expiry}.{mac}") is None, "another account id breaks the signature"
    assert TokenSigner(b"k" * 32, ttl_s=-1).account_of(TokenSigner(b"k" * 32, -1).issue("abc")) is None
    assert signer.account_of("garbage") is None


def _serve(*args: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "simulator.cli", "serve", *args], capture_output=True, text=True, timeout=60
    )


def test_serve_refuses_a_non_loopback_host_without_the_flag(tmp_path):
    run = _serve("--db", str(tmp_path / "x.db"), "--host", "0.0.0.0")
    assert run.returncode == 2
    assert (
        run.stderr.startswith("error: ") and "--allow-remote" in run.stderr and "Traceback" not in run.stderr
    )
    assert not (tmp_path / "x.db").exists(), "nothing is created before the refusal"


def test_serve_bad_database_and_registry_are_one_line_errors(tmp_path):
    run = _serve("--db", "oracle://scott@db/x")
    assert (
        run.returncode == 2
        and "unsupported database URL scheme" in run.stderr
        and "Traceback" not in run.stderr
    )
    run = _serve("--db", str(tmp_path / "x.db"), "--registry", str(tmp_path / "missing"))
    assert run.returncode == 2 and "population directory" in run.stderr and "Traceback" not in run.stderr
    run = _serve("--db", str(tmp_path / "x.db"), "--registry-latency", "lognormal:5")
    assert run.returncode == 2 and "--registry-latency" in run.stderr and "Traceback" not in run.stderr


def test_settings_from_mapping_converts_numbers_given_as_text():
    settings = Settings.from_mapping(
        {"registry_error_rate": "0.25", "sms_loss_rate": " 0.1", "password_cost": "0", "fault_seed": "3"}
    )
    assert (settings.registry_error_rate, settings.sms_loss_rate) == (0.25, 0.1)
    assert (settings.password_cost, settings.fault_seed) == (0, 3)
    with pytest.raises(InvalidOption, match="sms-loss-rate: expected a float"):
        Settings.from_mapping({"sms_loss_rate": "lots"})
    with pytest.raises(InvalidOption, match="rate in"):
        Settings.from_mapping({"registry_error_rate": "1.5"})


def test_lean_sign_up_path_takes_only_bodies_pydantic_would_take_unchanged():
    from simulator.api.signup import plain_signup

    plain = b'{"name": "Ani", "email": "ani@example.co.id", "password": "rahasia123", "extra": [1]}'
    assert plain_signup(plain) == {
        "name": "Ani",
        "email": "ani@example.co.id",
        "password": "rahasia123",
        "password_confirmation": None,
    }
    for body in (
        b'{"name": " Ani", "email": "ani@example.co.id", "password": "rahasia123"}',  # to strip
        b'{"name": "Ani\\u0000", "email": "ani@example.co.id", "password": "rahasia123"}',  # NUL
        b'{"name": "\\ud800", "email": "ani@example.co.id", "password": "rahasia123"}',  # lone surrogate
        b'{"name": "Ani", "email": "ani@example.co.id", "password": 12345678}',  # not a string
        b'{"name": "", "email": "ani@example.co.id", "password": "rahasia123"}',  # too short
        b'{"email": "ani@example.co.id", "password": "rahasia123"}',  # missing
        b'{"name": "Ani", "email": "ani@example.co.id", "password": NaN}',  # not JSON for orjson
        b'["Ani"]',
        b"{",
    ):
        assert plain_signup(body) is None, body


def test_outcome_counts_added_while_a_flush_runs_are_never_lost():
    """`add` runs on the event loop and `flush` in the thread pool: every count must arrive once."""
    import sys
    import threading

    from simulator.api.stats import OutcomeCounter

    class Totals:
        def __init__(self):
            self.total = 0

        def flush_outcomes(self, _worker, counts):
            self.total += sum(counts.values())

    store = Totals()
    counter = OutcomeCounter(store)
    adds, done = 300_000, threading.Event()

    def flush_often():
        while not done.is_set():
            counter.flush()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a race shows at once
    flusher = threading.Thread(target=flush_often)
    flusher.start()
    try:
        for i in range(adds):  # many outcomes: each new one in a fresh Counter runs Counter.__missing__
            counter.add("create_account", f"outcome-{i % 64}")
    finally:
        done.set()
        flusher.join()
        sys.setswitchinterval(interval)
    counter.flush()
    assert store.total == adds
