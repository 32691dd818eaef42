"""Reading a delivery's body as a Conveyor CloudEvents envelope.

The Rust runtime reads bodies with serde_json into a typed struct. A body it cannot read is
dead-lettered as ``malformed``; one it reads goes on to the other checks. To give the same
verdicts, this module is as strict as serde_json is where Python's ``json`` is laxer:

- the body must be UTF-8 (``json.loads`` of bytes would also guess UTF-16 and UTF-32);
- ``NaN``, ``Infinity`` and numbers too large for a double are refused;
- a lone surrogate escape (``"\\ud800"``) is refused;
- a known attribute given twice is refused (other repeated keys: the last one wins);
- ``-0`` is read as the float ``-0.0``, as serde_json reads it, so that the contract's integer
  rule refuses it like the Rust one does;
- ``id``, ``correlationid`` and ``causationid`` are UUIDs in the forms the Rust ``uuid`` crate
  reads (hyphenated, simple, braced, ``urn:uuid:``), nothing laxer;
- ``time`` is RFC 3339, with the relaxations chrono reads most often (``t`` or a space for
  ``T``, ``UTC`` for ``Z``, an offset without its colon).

Required (the protocol's table): specversion, id, source, type, time, datacontenttype,
correlationid, data. ``specversion`` must be ``"1.0"`` and ``type`` must not be blank.
Optional attributes that are ``null`` read as absent; other attributes are ignored.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

SPEC_VERSION = "1.0"

#: The attributes the Rust envelope struct reads; a repeat of one of these is an error there.
KNOWN_ATTRIBUTES = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "datacontenttype",
        "dataschema",
        "subject",
        "correlationid",
        "causationid",
        "data",
    }
)

# Rust's `char::is_whitespace` (Unicode White_Space), for the "blank type" rule: Python's
# str.isspace also counts U+001C..U+001F, which Rust does not.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

_HEX = "[0-9a-fA-F]"
_UUID_FORMS = re.compile(
    rf"(?:{_HEX}{{32}}"
    rf"|{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
    rf"|\{{{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}\}}"
    rf"|urn:uuid:{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})\Z"
)

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"\s*(?:([Zz]|[Uu][Tt][Cc])|([+-])([0-9]{2}):?([0-9]{2}))\Z"
)


class MalformedError(ValueError):
    """The body is not a Conveyor envelope: dead-lettered as ``malformed``."""


@dataclass(frozen=True)
class Envelope:
    """One event's CloudEvents attributes and data, as read from a body."""

    id: uuid.UUID
    source: str
    type: str
    time: datetime
    datacontenttype: str
    correlation_id: uuid.UUID
    data: Any
    dataschema: str | None = None
    subject: str | None = None
    causation_id: uuid.UUID | None = None
    specversion: str = SPEC_VERSION
    #: The whole parsed body, other attributes included (read-only by convention).
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


class _Object(dict):
    """A JSON object that remembers which keys it saw more than once."""

    repeated: frozenset[str] = frozenset()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    result = _Object(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        result.repeated = frozenset(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return result


def _parse_int(literal: str) -> int | float:
    # serde_json reads `-0` as the float -0.0 (a negative zero is no i64); keep that verdict.
    if literal == "-0":
        return -0.0
    return int(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"number out of range: {literal}")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_surrogates(value: Any) -> None:
    """serde_json refuses a lone surrogate escape; Python's json lets it through."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                raise ValueError("lone leading or trailing surrogate in a string")
        elif isinstance(item, dict):
            for key, inner in item.items():
                stack.append(key)
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)


# serde_json, which the Rust consumer reads with, takes 127 levels of arrays and objects and
# refuses the 128th ("recursion limit exceeded").
MAX_NESTING = 127


def loads_strict(body: bytes) -> Any:
    """Parses JSON with serde_json's verdicts (see the module's docstring)."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_refuse_constant,
        )
    except RecursionError:
        # Python's parser recurses per level; a body nested a thousand deep must be a
        # malformed event, not an error that takes the consumer down.
        raise ValueError(f"recursion limit exceeded: nested deeper than {MAX_NESTING}") from None
    if _nesting(value) > MAX_NESTING:
        raise ValueError(f"recursion limit exceeded: nested deeper than {MAX_NESTING}")
    _check_surrogates(value)
    return value


def _nesting(value: Any) -> int:
    """How deep arrays and objects nest in ``value`` (0 for a scalar), without recursing."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_NESTING:
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_uuid(text: Any) -> uuid.UUID:
    """A UUID in one of the forms the Rust ``uuid`` crate reads, and no other."""
    if not isinstance(text, str) or not _UUID_FORMS.match(text):
        raise ValueError(f"invalid UUID {text!r}")
    return uuid.UUID(text.removeprefix("urn:uuid:"))


def parse_time(text: Any) -> datetime:
    """An RFC 3339 date-time, as a UTC ``datetime`` (leap second 60 read as 59.999999)."""
    if not isinstance(text, str):
        raise ValueError(f"invalid time {text!r}: expected an RFC 3339 string")
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(f"invalid time {text!r}: expected RFC 3339")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = match.group(7)
    micros = int((fraction[1:] + "000000")[:6]) if fraction else 0
    if second == 60:  # a leap second: chrono accepts it, Python's datetime cannot hold it
        second, micros = 59, 999_999
    if match.group(8):
        offset = timedelta(0)
    else:
        hours, minutes = int(match.group(10)), int(match.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError(f"invalid time {text!r}: offset out of range")
        offset = timedelta(hours=hours, minutes=minutes)
        if match.group(9) == "-":
            offset = -offset
    try:
        local = datetime(year, month, day, hour, minute, second, micros, timezone(offset))
    except ValueError as error:
        raise ValueError(f"invalid time {text!r}: {error}") from None
    return local.astimezone(timezone.utc)


def is_blank(text: str) -> bool:
    return all(c in _WHITE_SPACE for c in text)


def parse_envelope(body: bytes) -> Envelope:
    """Reads ``body`` as an envelope.

    Raises:
        MalformedError: with the reason, worded once per cause (operators group by it).
    """
    try:
        document = loads_strict(body)
    except ValueError as error:
        raise MalformedError(f"body is not a CloudEvents JSON envelope: {error}") from None
    if not isinstance(document, dict):
        raise MalformedError(
            "body is not a CloudEvents JSON envelope: expected a JSON object, "
            f"found {type(document).__name__}"
        )
    repeated = sorted(getattr(document, "repeated", frozenset()) & KNOWN_ATTRIBUTES)
    if repeated:
        raise MalformedError(
            f"body is not a CloudEvents JSON envelope: duplicate field `{repeated[0]}`"
        )

    def required(name: str) -> Any:
        if name not in document:
            raise MalformedError(
                f"body is not a CloudEvents JSON envelope: missing field `{name}`"
            )
        return document[name]

    def text(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise MalformedError(
                f"body is not a CloudEvents JSON envelope: `{name}` must be a string"
            )
        return value

    def optional_text(name: str) -> str | None:
        value = document.get(name)
        return None if value is None else text(name, value)

    def attribute(name: str, read: Any, value: Any) -> Any:
        try:
            return read(value)
        except ValueError as error:
            raise MalformedError(
                f"body is not a CloudEvents JSON envelope: `{name}`: {error}"
            ) from None

    specversion = text("specversion", required("specversion"))
    event_id = attribute("id", parse_uuid, required("id"))
    source = text("source", required("source"))
    event_type = text("type", required("type"))
    time = attribute("time", parse_time, required("time"))
    datacontenttype = text("datacontenttype", required("datacontenttype"))
    dataschema = optional_text("dataschema")
    subject = optional_text("subject")
    correlation_id = attribute("correlationid", parse_uuid, required("correlationid"))
    causation = document.get("causationid")
    causation_id = None if causation is None else attribute("causationid", parse_uuid, causation)
    data = required("data")
    if specversion != SPEC_VERSION:
        raise MalformedError(
            f'unsupported CloudEvents specversion {specversion!r}: expected "1.0"'
        )
    if is_blank(event_type):
        raise MalformedError("event type is empty")
    return Envelope(
        id=event_id,
        source=source,
        type=event_type,
        time=time,
        datacontenttype=datacontenttype,
        correlation_id=correlation_id,
        data=data,
        dataschema=dataschema,
        subject=subject,
        causation_id=causation_id,
        specversion=specversion,
        raw=document,
    )
