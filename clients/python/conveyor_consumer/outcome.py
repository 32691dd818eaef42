"""Where a delivery ends up, and the retry copy or dead letter that takes it there.

Copies keep the body byte for byte and every header of the delivery, with the
``x-conveyor-*`` changes the protocol lists, so that ``conveyor dlq`` and the operators'
console handle them like any Rust service's.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from pamqp.commands import Basic

from .amqp_fields import Int64
from .names import Names
from .source import PUBLISHER_HEADER, header_text, origin, relays

ATTEMPTS = "x-conveyor-attempts"
ERROR = "x-conveyor-error"
ERROR_KIND = "x-conveyor-error-kind"
SERVICE = "x-conveyor-service"
FAILED_AT = "x-conveyor-failed-at"
ORIGINAL_EXCHANGE = "x-conveyor-original-exchange"
ORIGINAL_ROUTING_KEY = "x-conveyor-original-routing-key"
PUBLISHER = PUBLISHER_HEADER
REPLAY_COUNT = "x-conveyor-replay-count"
REPLAY_RUN = "x-conveyor-replay-run"

#: Error texts in headers are cut at this many bytes, on a character boundary.
MAX_ERROR_BYTES = 1000
PERSISTENT = 2


class DeadLetterKind(str, enum.Enum):
    """The text written to ``x-conveyor-error-kind``."""

    MALFORMED = "malformed"
    SCHEMA = "schema"
    UNKNOWN_TYPE = "unknown-type"
    FORBIDDEN_SOURCE = "forbidden-source"
    PERMANENT = "permanent"
    RETRIES_EXHAUSTED = "retries-exhausted"


def truncate(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """At most ``limit`` UTF-8 bytes, never splitting a character."""
    encoded = text.encode("utf-8", "replace")
    return encoded[:limit].decode("utf-8", "ignore")


def capped(text: str) -> str:
    """An error text no longer than its header, with ``…`` when cut: a huge invalid message
    cannot make an equally huge log line. (The header itself drops the ``…`` again.)"""
    if len(text.encode("utf-8", "replace")) <= MAX_ERROR_BYTES:
        return text
    return truncate(text) + "…"


def failed_at(now_ns: int | None = None) -> str:
    """RFC 3339 in UTC with ``+00:00``, the fraction written as chrono's ``to_rfc3339`` writes
    it: none, or 3, 6 or 9 digits, as few as hold the time exactly."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos == 0:
        fraction = ""
    elif nanos % 1_000_000 == 0:
        fraction = f".{nanos // 1_000_000:03d}"
    elif nanos % 1_000 == 0:
        fraction = f".{nanos // 1_000:06d}"
    else:
        fraction = f".{nanos:09d}"
    return f"{stamp}{fraction}+00:00"


@dataclass(frozen=True)
class Handled:
    """The handler ran and its transaction committed."""


@dataclass(frozen=True)
class Duplicate:
    """The inbox had this event id already: acknowledged, the handler did not run."""


@dataclass(frozen=True)
class Retry:
    """Sent to the retry queue of ``delay_ms``; ``attempts`` failed attempts so far."""

    delay_ms: int
    attempts: int
    error: str


@dataclass(frozen=True)
class DeadLetter:
    kind: DeadLetterKind
    error: str
    attempts: int


Outcome = Handled | Duplicate | Retry | DeadLetter


def transient(tiers_ms: Sequence[int], attempts: int, error: str) -> Retry | DeadLetter:
    """A transient failure: tier ``attempts`` (1-based), or ``retries-exhausted`` when no
    tier is left. ``attempts`` counts this failure."""
    if 1 <= attempts <= len(tiers_ms):
        return Retry(tiers_ms[attempts - 1], attempts, capped(error))
    return DeadLetter(DeadLetterKind.RETRIES_EXHAUSTED, capped(error), attempts)


def conflict(tiers_ms: Sequence[int], previous_attempts: int, error: str) -> Retry:
    """A lost race for a lock: the first tier, not counted as a failed attempt, so contention
    never exhausts the tiers into a dead letter."""
    return Retry(tiers_ms[0], previous_attempts, capped(error))


def dead_letter(kind: DeadLetterKind, error: str, attempts: int) -> DeadLetter:
    return DeadLetter(kind, capped(error), attempts)


@dataclass(frozen=True)
class Copy:
    """A retry copy or dead letter ready for the broker."""

    exchange: str
    routing_key: str
    body: bytes
    properties: Basic.Properties
    delivery_tag: int


def copy_of(
    outcome: Retry | DeadLetter,
    *,
    names: Names,
    service: str,
    connected_as: str,
    exchange: str,
    routing_key: str,
    delivery_tag: int,
    body: bytes,
    properties: Basic.Properties,
) -> Copy:
    """The message that carries a delivery to its retry queue or to ``<service>.dlq``.

    ``exchange`` and ``routing_key`` are the delivery's own; ``properties`` its AMQP
    properties as received.
    """
    if isinstance(outcome, Retry):
        target_exchange = names.retry_exchange
        target_key = names.retry_queue(service, outcome.delay_ms)
    else:
        target_exchange = names.dead_letter_exchange
        target_key = names.dead_letter_routing_key(service)
    headers: dict[str, Any] = dict(properties.headers or {})
    # Where it was first published is kept from a retry copy, never taken from a producer.
    from_retry = exchange == ""
    if not (from_retry and header_text(headers.get(ORIGINAL_EXCHANGE)) is not None):
        headers[ORIGINAL_EXCHANGE] = exchange
        headers[ORIGINAL_ROUTING_KEY] = routing_key
    # Who sent the event first goes with the copy, as far as the broker vouches for it.
    publisher = origin(properties.user_id, properties.headers, relays(names, service))
    if publisher is None:
        headers.pop(PUBLISHER, None)
    else:
        headers[PUBLISHER] = publisher
    headers[ATTEMPTS] = Int64(outcome.attempts)
    headers[ERROR] = truncate(outcome.error)
    if isinstance(outcome, DeadLetter):
        headers[SERVICE] = service
        headers[ERROR_KIND] = outcome.kind.value
        headers[FAILED_AT] = failed_at()
    copied = Basic.Properties(
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        headers=headers,
        delivery_mode=PERSISTENT,
        priority=properties.priority,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        message_id=properties.message_id,
        timestamp=properties.timestamp,
        message_type=properties.message_type,
        # The broker checks it against the publishing connection: the consumer's own user.
        user_id=connected_as,
        app_id=properties.app_id,
    )
    return Copy(target_exchange, target_key, body, copied, delivery_tag)


def previous_attempts(exchange: str, headers: Mapping[str, Any] | None) -> int:
    """Failed attempts before this delivery: ``x-conveyor-attempts``, believed only on a
    delivery through the default exchange (the way back from a retry queue); 0 for anything
    published to ``conveyor.events``, whatever a producer wrote. Any integer type, or text
    holding an integer, is read; a value outside 0..2^32-1 reads as 0, as in Rust."""
    if exchange != "" or not headers:
        return 0
    value = headers.get(ATTEMPTS)
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = int(value)
    else:
        text = header_text(value)
        if text is not None:
            digits = text[1:] if text[:1] in "+-" else text
            if digits.isascii() and digits.isdigit():
                number = int(text)
    if number is None or not 0 <= number <= 0xFFFF_FFFF:
        return 0
    return number
