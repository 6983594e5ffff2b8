"""The SMTP sink: an aiosmtpd handler that checks each recipient and files each message under each of
them, with the subject, the plain text and the OTP code found in them.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.policy
import html
import re
import time
from typing import Any

from simulator.upstreams.app import MAX_RECIPIENTS_PER_MESSAGE, Upstreams
from simulator.upstreams.messages import email_key

MAX_EMAIL_BYTES = 1_048_576
"""Largest email the SMTP server takes (its SIZE limit); more is refused with 552."""

_TAG = re.compile(r"<[^>]+>")


def email_text(content: bytes) -> tuple[str | None, str, str | None]:
    """(subject, plain text, from) of a raw message; an HTML-only body is reduced to its text.

    Parsed with the ``compat32`` policy and decoded by hand: the same answers as the ``default``
    policy's ``get_body``/``get_content`` for what an OTP mail carries, at about a fifth of the cost
    (the parse was most of an SMTP message's cost; see docs/upstreams.md).
    """
    message = email.message_from_bytes(content, policy=email.policy.compat32)
    plain = markup = None
    for part in message.walk():
        if part.is_multipart():
            continue
        if str(part.get("content-disposition", "")).strip().lower().startswith("attachment"):
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and plain is None:
            plain = part
        elif kind == "text/html" and markup is None:
            markup = part
    text = ""
    part = plain if plain is not None else markup
    if part is not None:
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                text = payload.decode(charset, "replace")
            except LookupError:  # an unknown charset: read it as UTF-8
                text = payload.decode("utf-8", "replace")
        if part is markup:
            text = html.unescape(_TAG.sub(" ", text))
    return _header_text(message.get("subject")), " ".join(text.split()), _header_text(message.get("from"))


def _header_text(value: Any) -> str | None:
    """A header's text: RFC 2047 encoded words decoded, folding undone."""
    if value is None:
        return None
    text = str(value)
    if "=?" in text:
        try:
            text = str(email.header.make_header(email.header.decode_header(text)))
        except (LookupError, ValueError, UnicodeError, email.errors.HeaderParseError):
            pass
    return " ".join(text.split())


class SmtpSink:
    """aiosmtpd handler: checks each recipient, files each message under each of them."""

    def __init__(self, upstreams: Upstreams):
        self.upstreams = upstreams

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if email_key(address) is None:
            self.upstreams.counters["smtp"].record("bad_request")
            return f"553 5.1.3 {address[:60]!r} is not an email address"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS_PER_MESSAGE:
            return f"452 4.5.3 at most {MAX_RECIPIENTS_PER_MESSAGE} recipients per message"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        started = time.perf_counter()
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        subject, text, sender = email_text(content)
        counters = self.upstreams.counters["smtp"]
        for address in envelope.rcpt_tos:
            delivered = self.upstreams.file_message(
                "email", email_key(address) or address, text, subject, sender or envelope.mail_from
            )
            counters.record("accepted" if delivered else "lost", (time.perf_counter() - started) * 1000)
        return "250 OK: queued"
