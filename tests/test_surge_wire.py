"""The journey's lean send (simulator/surge/wire.py) against Locust's own FastHttpSession.request.

Each case sends the same request both ways to a raw loopback HTTP server that records every
request as it arrives (method, request URI, headers in order, body); the two must have put the
same requests on the wire and got the same answers (status, decoded body, cookies kept, the label
of a request that got no answer). Locust patches the standard library with gevent as it is
imported, so the cases run in a fresh Python process: this file, run as a script, prints them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CASES = {
    "get": {"method": "GET", "path": "/ok", "headers": {"Authorization": "Bearer t0k"}},
    "json refusal": {
        "method": "POST",
        "path": "/refuse",
        "data": '{"email": "siti@contoh.invalid"}',
        "headers": {"Content-Type": "application/json", "Idempotency-Key": "run-1-7-create"},
    },
    "form": {
        "method": "POST",
        "path": "/ok",
        "data": "nama=Siti+Aminah&csrf=abc",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    },
    "bytes body": {"method": "PUT", "path": "/ok", "data": b"\x00\xffKTP", "headers": {}},
    "text body, no type": {"method": "POST", "path": "/ok", "data": "halo", "headers": {}},
    "gzip answer": {"method": "GET", "path": "/gzip", "headers": {}},
    "unsafe path": {"method": "GET", "path": "/v1/accounts/a b/ü%41", "headers": {}},
    "query params": {"method": "GET", "path": "/ok", "params": {"to": "siti@contoh.invalid"}, "headers": {}},
    "list params": {"method": "GET", "path": "/ok", "params": {"to": ["a b", "c"]}, "headers": {}},
    "cookie kept and sent": {"method": "GET", "path": "/cookie", "then": "/echo-cookie", "headers": {}},
    "303 followed": {"method": "POST", "path": "/see-other", "data": "x=1", "headers": {}},
    "303 not followed": {
        "method": "POST",
        "path": "/see-other",
        "data": "x=1",
        "headers": {},
        "follow": False,
    },
    "307 followed": {"method": "POST", "path": "/temporary", "data": "x=1", "headers": {}},
    "timeout": {"method": "GET", "path": "/slow", "headers": {}},
    "connection closed": {"method": "GET", "path": "/close", "headers": {}},
    "refused": {"method": "GET", "path": "/ok", "headers": {}, "port": "closed"},
    "base path": {"method": "GET", "path": "/ok", "headers": {}, "base": "/api"},
    "user's default headers": {
        "method": "GET",
        "path": "/ok",
        "headers": {"X-Step": "login"},
        "defaults": {"User-Agent": "prakerja-sim", "X-Env": "staging"},
    },
}


def run_cases() -> dict:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def results() -> dict:
    return run_cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_lean_send_puts_the_same_requests_on_the_wire_and_reads_the_same_answers(results, case):
    lean, locust = results[case]["lean"], results[case]["locust"]
    assert lean["requests"] == locust["requests"]
    assert lean["answer"] == locust["answer"]
    assert lean["requests"] or case == "refused"


def test_the_cases_say_what_they_claim(results):
    """The comparison would be empty if both sides were broken alike: pin what each case shows."""
    lean = {case: results[case]["lean"] for case in CASES}
    assert lean["get"]["answer"] == {"status": 200, "body": '{"ok": true}', "cookies": [], "failure": None}
    assert lean["get"]["requests"][0]["uri"] == "/ok"
    assert ["authorization", "Bearer t0k"] in lean["get"]["requests"][0]["headers"]
    assert lean["json refusal"]["answer"]["status"] == 409
    assert lean["json refusal"]["requests"][0]["body"] == '{"email": "siti@contoh.invalid"}'
    assert lean["gzip answer"]["answer"]["body"] == '{"compressed": true}'
    assert lean["unsafe path"]["requests"][0]["uri"] == "/v1/accounts/a%20b/%C3%BCA"
    assert lean["query params"]["requests"][0]["uri"] == "/ok?to=siti%40contoh.invalid"
    cookie = lean["cookie kept and sent"]
    assert cookie["answer"]["cookies"] == ["sid=s3ss10n"] and cookie["answer"]["body"] == "sid=s3ss10n"
    followed = lean["303 followed"]["requests"]
    assert [(r["method"], r["uri"], r["body"]) for r in followed] == [
        ("POST", "/see-other", "x=1"),
        ("GET", "/ok", ""),
    ]
    assert lean["303 not followed"]["answer"]["status"] == 303
    assert len(lean["303 not followed"]["requests"]) == 1
    kept = lean["307 followed"]["requests"]
    assert [(r["method"], r["uri"], r["body"]) for r in kept] == [
        ("POST", "/temporary", "x=1"),
        ("POST", "/ok", "x=1"),
    ]
    assert lean["timeout"]["answer"]["failure"] == "TIMEOUT"
    assert lean["connection closed"]["answer"]["failure"] == "CONNECTION_ERROR"
    assert lean["refused"]["answer"]["failure"] == "CONNECTION_ERROR"
    assert lean["base path"]["requests"][0]["uri"] == "/api/ok"
    sent_headers = dict(lean["user's default headers"]["requests"][0]["headers"])
    assert sent_headers["user-agent"] == "prakerja-sim" and sent_headers["x-env"] == "staging"
    assert lean["list params"]["requests"][0]["uri"] == "/ok?to=a+b&to=c"
    # What goes the lean way and what is handed to the UserAgent (list parameters, here).
    handed_over = {case for case in CASES if not results[case]["lean path"]}
    assert handed_over == {"list params"}


# -- run as a script: the server and both senders, in one gevent process ---------------------------
def _serve() -> tuple[int, list[dict]]:
    import gzip

    import gevent
    from gevent.server import StreamServer

    seen: list[dict] = []

    def answer(status: str, body: bytes, extra: str = "") -> bytes:
        head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        return f"{head}Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body

    def handle(sock, _address):
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, uri, _version = lines[0].split(" ")
            headers = [[n.strip().lower(), v.strip()] for n, v in (line.split(":", 1) for line in lines[1:])]
            length = int(dict(headers).get("content-length", 0))
            while len(buffer) < length:
                buffer += sock.recv(65536)
            body, buffer = buffer[:length], buffer[length:]
            seen.append({"method": method, "uri": uri, "headers": headers, "body": body.decode("latin-1")})
            path = uri.split("?")[0].removeprefix("/api")
            if path == "/slow":
                gevent.sleep(3)
                return
            if path == "/close":
                sock.close()
                return
            if path == "/refuse":
                reply = answer("409 Conflict", b'{"error": {"code": "EMAIL_TAKEN"}}')
            elif path == "/gzip":
                packed = gzip.compress(b'{"compressed": true}')
                reply = answer("200 OK", packed, "Content-Encoding: gzip\r\n")
            elif path == "/cookie":
                reply = answer("200 OK", b"{}", "Set-Cookie: sid=s3ss10n; Path=/\r\n")
            elif path == "/echo-cookie":
                reply = answer("200 OK", dict(headers).get("cookie", "").encode())
            elif path == "/see-other":
                reply = answer("303 See Other", b"", "Location: /ok\r\n")
            elif path == "/temporary":
                reply = answer("307 Temporary Redirect", b"", "Location: /ok\r\n")
            else:
                reply = answer("200 OK", b'{"ok": true}')
            sock.sendall(reply)

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    return server.server_port, seen


def _session(base: str, defaults: dict[str, str] | None = None):
    from locust.contrib.fasthttp import FastHttpSession
    from locust.event import EventHook

    from simulator.surge.wire import LeanCookieJar

    session = FastHttpSession(
        base,
        request_event=EventHook(),
        user=None,
        network_timeout=0.5,
        connection_timeout=0.5,
        max_retries=0,
        max_redirects=30,
        headers=defaults,  # a FastHttpUser's default_headers
    )
    session.cookiejar = session.client.cookiejar = LeanCookieJar()
    return session


def _result(session, response) -> dict:
    from simulator.surge.harness import failure_code

    status = response.status_code or 0
    return {
        "status": status,
        "body": response.content.decode() if status else None,
        "cookies": sorted(f"{c.name}={c.value}" for c in session.cookiejar),
        "failure": None if status else failure_code(getattr(response, "error", None)),
    }


def _run(port: int, closed: int, seen: list[dict]) -> dict:
    from simulator.surge.harness import ACCEPT_ENCODING
    from simulator.surge.wire import Wire

    out = {}
    for case, spec in CASES.items():
        base = f"http://127.0.0.1:{closed if spec.get('port') else port}{spec.get('base', '')}"
        follow = spec.get("follow", True)
        out[case] = {}
        for side in ("lean", "locust"):
            seen.clear()
            session = _session(base, spec.get("defaults"))
            wire = Wire(session, spec.get("defaults"))  # one per journey, as JourneyUser makes it
            paths = [spec["path"], *([spec["then"]] if "then" in spec else [])]
            for path in paths:
                headers = {"Accept-Encoding": ACCEPT_ENCODING, **spec["headers"]}
                data = spec.get("data")
                if side == "lean":
                    response = wire.send(
                        spec["method"], base + path, path, data, headers, spec.get("params"), follow
                    )
                else:
                    response = session.request(
                        spec["method"],
                        path,
                        data=data,
                        headers=headers,
                        params=spec.get("params"),
                        allow_redirects=follow,
                    )
                result = _result(session, response)
            out[case][side] = {"requests": list(seen), "answer": result}
            if side == "lean":  # it sent on its own at least once (it takes the target's client only then)
                out[case]["lean path"] = wire.http is not None
    return out


if __name__ == "__main__":
    import locust  # noqa: F401, I001  (first: it patches the standard library with gevent)
    import socket

    port, seen = _serve()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    print(json.dumps(_run(port, closed, seen)))
