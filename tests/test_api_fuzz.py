"""Property-based fuzzing of the reference API with schemathesis, from its own /openapi.json.

Every generated request, valid or not, must get a documented status (never a 5xx) and a body that
matches the documented schema. Bounded (examples per operation, one seed) to stay under a minute.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from simulator.api.testing import running_server, scratch_database, seed_ready_accounts

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def _schemathesis() -> str:
    beside = Path(sys.executable).with_name("schemathesis")
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    if not found:
        pytest.skip("the schemathesis command is not installed (pip install -e '.[test]')")
    return found


def test_fuzzing_finds_no_server_error_and_no_schema_violation(tmp_path):
    command = _schemathesis()
    with scratch_database() as db_url:
        applicant = seed_ready_accounts(db_url, 2)[0]
        with running_server(db_url, password_cost=0, log_path=tmp_path / "server.log") as base_url:
            login = requests.post(
                base_url + "/v1/sessions",
                timeout=30,
                json={"email": applicant["email"], "password": applicant["password"]},
            )
            token = login.json()["token"]
            # A logged-in applicant, so the fuzzer reaches past authentication into every step.
            run = subprocess.run(
                [
                    command,
                    "run",
                    base_url + "/openapi.json",
                    "--checks",
                    CHECKS,
                    "--max-examples",
                    "10",
                    "--seed",
                    "20201102",
                    "--workers",
                    "1",
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--generation-database",
                    "none",
                    "--suppress-health-check",
                    "all",
                    "--no-color",
                    "--request-timeout",
                    "20",
                    "-H",
                    f"Authorization: Bearer {token}",
                ],
                capture_output=True,
                text=True,
                timeout=240,
            )
    server_log = (tmp_path / "server.log").read_text(errors="replace")
    assert run.returncode == 0, (
        run.stdout[-8000:] + run.stderr[-2000:] + "\nserver log:\n" + server_log[-4000:]
    )
    assert " passed" in run.stdout
