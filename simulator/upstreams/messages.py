"""What the SMS gateway and the SMTP server received: a bounded ring of recent messages per recipient,
the OTP code each one carries, and the recipient keys (phone numbers, email addresses) they are filed under.

Memory is bounded twice: ``per_recipient`` messages each, ``max_recipients`` recipients (least recently
written go first), texts cut at ``TEXT_LIMIT`` characters.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass

TEXT_LIMIT = 480
"""Characters of a message's text kept (three SMS segments): enough to show, bounded in memory."""

# A code near a word that announces it ("kode OTP Anda: 123456", "your code is 1234", "PIN 0042"),
# else the only 4-8 digit number of the text standing on its own.
_ANNOUNCED = re.compile(
    r"(?:kode|code|otp|pin|token|verifikasi|verification)\D{0,30}?(?<!\d)(\d{4,8})(?!\d)", re.IGNORECASE
)
_STANDALONE = re.compile(r"(?<![\d\w])(\d{4,8})(?![\d\w])")


def extract_otp(text: str) -> str | None:
    """The OTP code a message carries, or None when it carries none (or several, unannounced)."""
    found = _ANNOUNCED.search(text)
    if found:
        return found.group(1)
    numbers = set(_STANDALONE.findall(text))
    return numbers.pop() if len(numbers) == 1 else None


def phone_key(text: str) -> str | None:
    """An Indonesian mobile number as the population writes it (``08...``): +62 / 62 / 0 prefixes agree."""
    digits = text if text.isdigit() else re.sub(r"[\s().-]", "", text.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    if not digits.isdigit():
        return None
    if digits.startswith("62"):
        digits = "0" + digits[2:]
    elif digits.startswith("8"):
        digits = "0" + digits
    return digits if 8 <= len(digits) <= 15 else None


def email_key(text: str) -> str | None:
    """An email address, lower-cased (``Name <a@b>`` forms are unwrapped); None when it is not one."""
    text = text.strip()
    if "<" in text and text.endswith(">"):
        text = text[text.rindex("<") + 1 : -1]
    text = text.strip().lower()
    local, at, domain = text.partition("@")
    return text if at and local and "." in domain and " " not in text and len(text) <= 254 else None


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the recipient would see it, and when."""

    channel: str  # "sms" or "email"
    to: str
    received_at: float  # epoch seconds the sink accepted it
    deliver_at: float  # epoch seconds it shows up on the phone / in the inbox
    code: str | None
    text: str
    subject: str | None = None
    sender: str | None = None

    def as_json(self) -> dict:
        out = {
            "channel": self.channel,
            "to": self.to,
            "code": self.code,
            "received_at": _iso(self.received_at),
            "delivered_at": _iso(self.deliver_at),
            "text": self.text,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        if self.sender is not None:
            out["from"] = self.sender
        return out


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


class Outbox:
    """Recent messages per recipient, newest last; only delivered ones are shown.

    Each ring is held as a tuple of plain tuples (of strings, floats and None), which the garbage
    collector stops tracking: a full outbox (200,000 recipients x 8 messages) then costs a full
    collection ~15 ms instead of ~370 ms as dataclass instances in deques, a pause that stalled the
    event loop, and the registry checks behind it, each time the collector ran. A ring is rebuilt
    on each message (at most ``per_recipient`` entries: cheaper than the pause).
    """

    def __init__(self, per_recipient: int = 8, max_recipients: int = 200_000):
        if per_recipient < 1 or max_recipients < 1:
            raise ValueError("per_recipient and max_recipients must be >= 1")
        self.per_recipient = per_recipient
        self.max_recipients = max_recipients
        self._rings: OrderedDict[str, tuple[tuple, ...]] = OrderedDict()
        self.evicted_recipients = 0

    def __len__(self) -> int:
        return len(self._rings)

    def add(self, message: Message) -> None:
        m = message
        entry = (m.channel, m.to, m.received_at, m.deliver_at, m.code, m.text, m.subject, m.sender)
        rings = self._rings
        ring = rings.get(m.to)
        if ring is None:
            if len(rings) >= self.max_recipients:
                rings.popitem(last=False)
                self.evicted_recipients += 1
            rings[m.to] = (entry,)
            return
        rings.move_to_end(m.to)
        rings[m.to] = (*ring[1:], entry) if len(ring) >= self.per_recipient else (*ring, entry)

    def held(self, to: str) -> list[Message]:
        """Every message held for ``to``, delivered or not, oldest first."""
        return [Message(*entry) for entry in self._rings.get(to, ())]

    def delivered(self, to: str, now: float | None = None, limit: int = 20) -> list[Message]:
        """Messages to ``to`` that have arrived by ``now``, newest first."""
        ring = self._rings.get(to)
        if not ring:
            return []
        now = time.time() if now is None else now
        shown = [Message(*entry) for entry in reversed(ring) if entry[3] <= now]
        return shown[:limit]

    def messages_held(self) -> int:
        return sum(len(ring) for ring in self._rings.values())
