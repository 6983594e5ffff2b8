"""The KTP upload step: the route, the multipart body read as a stream, photos decoded in a bounded pool.

Owns ``POST /v1/me/ktp`` (`add_upload_routes`), `record_ktp` (table ``ktp_uploads``), `read_upload` (the
body streamed through python-multipart's parser, stopped at the size limit) and `DecodePool`. The
upload rules themselves are simulator/rules/upload.py; this module only feeds them, a few at a time.
"""

import asyncio
import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Request
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import Connection, insert
from starlette.concurrency import run_in_threadpool

from simulator.api import models as m
from simulator.api.auth import Auth
from simulator.api.progress import ProgressStore, require
from simulator.api.responses import ApiError, Reply, reply_response
from simulator.api.store import Store
from simulator.database import schema as t
from simulator.database.schema import utcnow
from simulator.rules.reasons import ACCEPT, Reason
from simulator.rules.upload import MAX_UPLOAD_BYTES, UploadVerdict, validate_upload


class DecodePool:
    """At most ``size`` photos checked at once in this worker; the others wait their turn.

    A photo's check decodes it (reduced, but tens of MB for the largest accepted): a burst of
    uploads, honest or bombs, then costs ``size`` decodes of memory, never one per request.
    """

    def __init__(self, size: int, check: Callable[[bytes, str | None], UploadVerdict] = validate_upload):
        self.size = size
        self.check = check
        self._slots = asyncio.Semaphore(size)

    async def validate(self, data: bytes, filename: str | None) -> UploadVerdict:
        async with self._slots:
            return await run_in_threadpool(self.check, data, filename)


def _header_text(raw: bytes, limit: int) -> str | None:
    """A multipart header value as stored: printable characters only (no NUL), at most ``limit``."""
    text = "".join(ch for ch in raw.decode("utf-8", "replace") if ch.isprintable())[:limit]
    return text or None


async def read_upload(request: Request) -> tuple[bytes, str | None, str | None]:
    """Stream a multipart body and return the ``file`` part; stop at the size limit without reading on."""
    too_large = ApiError(
        Reason.FILE_TOO_LARGE,
        f"the file is larger than {MAX_UPLOAD_BYTES // 1048576} MB",
        headers={"Connection": "close"},  # the rest of the body is never read: drop the connection
    )
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(Reason.VALIDATION_ERROR, "send the photo as multipart/form-data with a 'file' field")

    part: dict[str, Any] = {"headers": {}, "field": b"", "value": b""}
    found: dict[str, Any] = {}
    buffer = bytearray()

    def on_part_begin():
        part.update(headers={}, field=b"", value=b"")

    def on_header_field(data, start, end):
        part["field"] += data[start:end]

    def on_header_value(data, start, end):
        part["value"] += data[start:end]

    def on_header_end():
        part["headers"][part["field"].lower()] = part["value"]
        part.update(field=b"", value=b"")

    def on_headers_finished():
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        part["is_file"] = disposition.get(b"name") == b"file" and "file" not in found
        if part["is_file"]:
            found["file"] = True
            found["filename"] = _header_text(disposition.get(b"filename", b""), 255)
            found["content_type"] = _header_text(part["headers"].get(b"content-type", b""), 100)

    def on_part_data(data, start, end):
        if part.get("is_file"):
            buffer.extend(data[start:end])
            if len(buffer) > MAX_UPLOAD_BYTES:
                raise too_large

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    try:
        async for chunk in request.stream():  # bounded by BodyLimitMiddleware (MAX_UPLOAD_BODY)
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        raise
    except Exception as err:  # the multipart framing is broken
        raise ApiError(Reason.VALIDATION_ERROR, f"the multipart body cannot be read ({err})") from None
    if "file" not in found:
        raise ApiError(Reason.VALIDATION_ERROR, "the multipart body has no 'file' field")
    return bytes(buffer), found.get("filename"), found.get("content_type")


def record_ktp(store: Store, account_id: str, record: dict[str, Any], reply: Reply) -> Reply:
    """Store an upload's verdict (accepted or not) with its reply, which gets the ``upload_id``."""

    def work(conn: Connection) -> Reply:
        row = dict(record, account_id=account_id, created_at=utcnow())
        result = conn.execute(insert(t.ktp_uploads).values(**row))
        reply.body["upload_id"] = int(result.inserted_primary_key[0])
        return reply

    return store.write(work)


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "JPG/JPEG or PNG photo of the KTP, at most 2 MB",
                        }
                    },
                }
            }
        },
    }
}


def add_upload_routes(
    router: APIRouter, store: Store, progress: ProgressStore, auth: Auth, decoders: DecodePool
) -> None:
    Account = Annotated[str, auth.account]

    @router.post(
        "/v1/me/ktp",
        tags=["applicant"],
        name="ktp",
        status_code=201,
        responses={201: {"model": m.KtpOut}},
        openapi_extra=_UPLOAD_BODY,
    )
    async def upload_ktp(request: Request, account_id: Account):
        require(await progress.of(account_id), "identity_verified")
        data, filename, content_type = await read_upload(request)
        verdict = await decoders.validate(data, filename)
        record = {
            "verdict": verdict.verdict,
            "filename": filename,
            "content_type": content_type,
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "width": verdict.width,
            "height": verdict.height,
        }
        if verdict.accepted:
            reply = Reply(
                201,
                {
                    "verdict": ACCEPT,
                    "message": verdict.message or "accepted",
                    "format": verdict.format,
                    "width": verdict.width,
                    "height": verdict.height,
                    "size_bytes": len(data),
                    "sha256": record["sha256"],
                },
            )
        else:
            request.scope.setdefault("state", {})["error_code"] = str(verdict.reason)
            reply = Reply(
                verdict.reason.http_status,
                {"error": {"code": str(verdict.reason), "message": verdict.message}},
            )
        reply = await run_in_threadpool(record_ktp, store, account_id, record, reply)
        if reply.status >= 400:
            reply.body.pop("upload_id", None)
        return reply_response(reply)
