"""A target far cheaper than the load generator: an asyncio HTTP/1.1 server answering canned JSON.

    python benchmarks/_cheap_target.py [--port 0]

Prints the port it listens on (loopback only), then answers every request, whatever its method
and path, with ``200 {"ok":true}`` on a keep-alive connection (closed when the client asks).
Request bodies (``Content-Length``) are read and dropped. It parses just enough HTTP for the
harness benchmark, where the load generator must be the bottleneck: one request costs it a few
tens of CPU microseconds, a Locust request costs the client several times that.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

BODY = b'{"ok":true}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
CLOSING = ANSWER.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)


class Canned(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""
        self.skip = 0  # body bytes still to drop

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        out = []
        while True:
            if self.skip:
                dropped = min(self.skip, len(buffer))
                buffer, self.skip = buffer[dropped:], self.skip - dropped
                if self.skip:
                    break
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buffer = buffer[:end].lower(), buffer[end + 4 :]
            length = head.find(b"\r\ncontent-length:")
            if length >= 0:
                value = head[length + 17 :].split(b"\r\n", 1)[0]
                self.skip = int(value.strip() or 0)
            if b"\r\nconnection: close" in head:
                out.append(CLOSING)
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            out.append(ANSWER)
        self.buffer = buffer
        if out:
            self.transport.write(b"".join(out))


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Canned, "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
