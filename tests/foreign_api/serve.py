"""``python -m foreign_api.serve --db FILE``: the Pendaftaran API under uvicorn on 127.0.0.1.

Binds port 0 itself (or ``--port``) and prints ``PORT <n>`` on stdout once it listens, so a test
can start it with no race for a free port (runner.py).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys

import uvicorn

from foreign_api.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="foreign_api.serve")
    parser.add_argument("--db", required=True, help="the SQLite file (runner.prepare_database makes it)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--admin-key", default=None)
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)
    config = uvicorn.Config(
        create_app(args.db, args.admin_key),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))
    sys.exit(0)


if __name__ == "__main__":
    main()
