"""The event contract: ``data`` checked against ``<schemas_dir>/<type>/v<N>.json``.

A stock JSON Schema validator is laxer than the Rust contract (``events-schema`` crate), so
this module adds what the protocol chapter lists, to give the same verdicts:

- JSON Schema 2020-12 with ``format`` asserted. ``uuid``, ``email`` and ``date-time`` are
  checked here as the Rust validator checks them (Python's ``jsonschema`` alone checks
  ``email`` only for an ``@``, and ``date-time`` not at all without an extra package).
- ``pattern`` with ECMA-262 meaning: Python's ``$`` also matches before a final newline, so
  ``"EUR\\n"`` would pass ``^[A-Z]{3}$``; patterns are translated so that it does not.
- Where the schema types a field as ``integer``, the value must be a JSON integer literal
  within i64: ``1.0``, ``-0`` and ``1e3`` are refused (JSON Schema calls them integers).
- Money ceilings that the v1 schemas do not state (``CEILINGS``, from
  ``events-schema/src/money.rs``).
- No string in ``data`` may hold U+0000.

The version comes from ``dataschema``: ``events-schema/<type>/v<N>`` or
``urn:conveyor:events-schema:<type>:v<N>``; absent means 1. One naming another type, or a
version the catalog does not have, is a ``schema`` failure.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from jsonschema import Draft202012Validator, FormatChecker

from .envelope import Envelope

MAX_PRICE_CENTS = 10_000_000_000
MAX_TOTAL_CENTS = 1_000_000_000_000

#: (event type, version, field path with ``[]`` for every item of a list) -> ceiling.
#: Copied from ``events-schema/src/money.rs``; a test compares the two when the repository
#: is at hand. v2 schemas state their ceilings as ``maximum`` and need no entry.
CEILINGS: dict[tuple[str, int, str], int] = {
    ("product.created", 1, "price_cents"): MAX_PRICE_CENTS,
    ("product.updated", 1, "price_cents"): MAX_PRICE_CENTS,
    ("order.created", 1, "items[].unit_price_cents"): MAX_PRICE_CENTS,
    ("order.created", 1, "total_cents"): MAX_TOTAL_CENTS,
    ("order.confirmed", 1, "total_cents"): MAX_TOTAL_CENTS,
    ("inventory.reserved", 1, "total_cents"): MAX_TOTAL_CENTS,
    ("payment.captured", 1, "amount_cents"): MAX_TOTAL_CENTS,
    ("payment.declined", 1, "amount_cents"): MAX_TOTAL_CENTS,
    ("payment.refunded", 1, "amount_cents"): MAX_TOTAL_CENTS,
    ("user.registered", 1, "credit_limit_cents"): MAX_TOTAL_CENTS,
    ("user.updated", 1, "credit_limit_cents"): MAX_TOTAL_CENTS,
}

I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class ContractViolation(ValueError):
    """``data`` breaks the contract: dead-lettered as ``schema``."""


# --- formats, as the Rust `jsonschema` crate asserts them -----------------------------------

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"\Z')
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
_TIME = re.compile(
    r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))\Z"
)


def is_hostname(text: str) -> bool:
    if not text or len(text) > 253 or text.endswith(".") or not text.isascii():
        return False
    return all(_LABEL.match(label) for label in text.split("."))


def is_email(text: str) -> bool:
    """ASCII ``local@domain``: a dot-atom or quoted local part of at most 64 bytes, and a
    host name or an address literal (``[192.0.2.1]``, ``[IPv6:…]``)."""
    if not isinstance(text, str) or not text.isascii() or len(text) > 254 or "@" not in text:
        return False
    local, _, domain = text.rpartition("@")
    if not local or len(local) > 64:
        return False
    if not (_DOT_ATOM.match(local) or _QUOTED.match(local)):
        return False
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        try:
            if literal[:5].lower() == "ipv6:":
                ipaddress.IPv6Address(literal[5:])
            else:
                ipaddress.IPv4Address(literal)
        except ValueError:
            return False
        return True
    return is_hostname(domain)


def _days_in(year: int, month: int) -> int:
    if month == 2:
        return 29 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 28
    return 30 if month in (4, 6, 9, 11) else 31


def is_date(text: str) -> bool:
    match = _DATE.match(text)
    if not match:
        return False
    year, month, day = (int(g) for g in match.groups())
    return 1 <= month <= 12 and 1 <= day <= _days_in(year, month)


def is_time(text: str) -> bool:
    match = _TIME.match(text)
    if not match:
        return False
    hour, minute, second = int(match[1]), int(match[2]), int(match[3])
    if match[4]:
        offset_h = offset_m = 0
        sign = 1
    else:
        sign = -1 if match[5] == "-" else 1
        offset_h, offset_m = int(match[6]), int(match[7])
        if offset_h > 23 or offset_m > 59:
            return False
    if hour > 23 or minute > 59 or second > 60:
        return False
    if second == 60:  # a leap second happens only at 23:59:60 UTC
        utc_minutes = (hour * 60 + minute - sign * (offset_h * 60 + offset_m)) % 1440
        return utc_minutes == 23 * 60 + 59
    return True


def is_date_time(text: str) -> bool:
    if not isinstance(text, str):
        return True
    for index, char in enumerate(text):
        if char in "Tt":
            return is_date(text[:index]) and is_time(text[index + 1 :])
    return False


def _format_checker() -> FormatChecker:
    checker = FormatChecker()  # every format jsonschema knows, in a copy of its own
    for name, check in (("uuid", _UUID.match), ("email", is_email), ("date-time", is_date_time)):
        checker.checks(name)(lambda value, check=check: not isinstance(value, str) or bool(check(value)))
    return checker


def ecma_pattern(pattern: str) -> str:
    """``pattern`` with ECMA-262 meaning under Python's ``re.search``: ``$`` outside a class
    becomes ``\\Z`` (Python's ``$`` also matches before a final newline), ``\\d`` becomes
    ASCII digits (Python's would take any Unicode digit)."""
    out: list[str] = []
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            pair = pattern[index : index + 2]
            if pair == "\\d":
                out.append("0-9" if in_class else "[0-9]")
            else:
                out.append(pair)
            index += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            # A `]` right after `[` or `[^` is a literal member in both dialects.
            out.append(char)
            index += 1
            if pattern[index : index + 1] == "^":
                out.append("^")
                index += 1
            if pattern[index : index + 1] == "]":
                out.append("\\]")
                index += 1
            continue
        elif char == "$":
            out.append(r"\Z")
            index += 1
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _translate_patterns(schema: Any, originals: dict[str, str]) -> Any:
    """``schema`` with every ``pattern`` translated; ``originals`` maps each translation back
    to the schema's own text, for error messages."""
    if isinstance(schema, dict):
        translated = {}
        for key, value in schema.items():
            if key == "pattern" and isinstance(value, str):
                translated[key] = ecma_pattern(value)
                originals[translated[key]] = value
            else:
                translated[key] = _translate_patterns(value, originals)
        return translated
    if isinstance(schema, list):
        return [_translate_patterns(item, originals) for item in schema]
    return schema


# --- integer places ------------------------------------------------------------------------

Step = str | None  # a property name, or None for "every item of a list"


def _types_integer(schema: Any) -> bool:
    kind = schema.get("type") if isinstance(schema, dict) else None
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind)


def integer_places(schema: Any, steps: tuple[Step, ...] = ()) -> Iterator[tuple[Step, ...]]:
    """Every place the schema types as ``integer``, through ``properties`` and ``items`` (the
    only keywords leading into data that the catalog's schemas use)."""
    if not isinstance(schema, dict):
        return
    if _types_integer(schema):
        yield steps
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, inner in properties.items():
            yield from integer_places(inner, steps + (name,))
    items = schema.get("items")
    if isinstance(items, dict):
        yield from integer_places(items, steps + (None,))


def place_name(steps: Iterable[Step]) -> str:
    """``items[].unit_price_cents``, as ``CEILINGS`` spells a place."""
    name = ""
    for step in steps:
        if step is None:
            name += "[]"
        else:
            name = f"{name}.{step}" if name else step
    return name


def _pointer_token(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _numbers_at(data: Any, steps: tuple[Step, ...], at: str) -> Iterator[tuple[str, Any]]:
    if not steps:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            yield at, data
        return
    step, rest = steps[0], steps[1:]
    if step is None:
        if isinstance(data, list):
            for index, item in enumerate(data):
                yield from _numbers_at(item, rest, f"{at}/{index}")
    elif isinstance(data, dict) and step in data:
        yield from _numbers_at(data[step], rest, f"{at}/{_pointer_token(step)}")


def integer_rule(number: int | float, ceiling: int | None) -> str | None:
    """What is wrong with ``number`` where the schema says ``integer`` (serde_json's view:
    i64, then u64, else a double)."""
    if isinstance(number, int) and I64_MIN <= number <= I64_MAX:
        if ceiling is not None and number > ceiling:
            return f"{number} is greater than the ceiling of {ceiling} (events_schema::money)"
        return None
    if isinstance(number, int) and I64_MAX < number <= U64_MAX:
        return (
            f"{number} is greater than {I64_MAX}, the largest integer an event may carry (i64)"
        )
    value = float(number)
    if value.is_integer():
        return (
            f"{json.dumps(value)} is not written as an integer: write it without a fraction, "
            "an exponent or a minus zero (1, not 1.0, 1e0 or -0)"
        )
    return None  # a fraction: the schema's own `type` refuses it


def _strings_with_nul(data: Any, at: str, problems: list[tuple[str, str]]) -> None:
    if isinstance(data, str):
        if "\0" in data:
            problems.append((at, "contains a NUL character (U+0000), which no service can store"))
    elif isinstance(data, dict):
        for name, value in data.items():
            _strings_with_nul(value, f"{at}/{_pointer_token(name)}", problems)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _strings_with_nul(item, f"{at}/{index}", problems)


# --- the contract --------------------------------------------------------------------------


@dataclass
class _Compiled:
    validator: Draft202012Validator
    integers: list[tuple[tuple[Step, ...], int | None]]
    patterns: dict[str, str]


_VERSION_DIGITS = re.compile(r"\+?[0-9]+\Z")


def version_in(event_type: str, dataschema: str | None) -> str:
    """The version ``dataschema`` names for ``event_type`` (absent means ``"1"``).

    Raises:
        ContractViolation: when it names another type or no version.
    """
    if dataschema is None:
        return "1"
    for prefix in (f"urn:conveyor:events-schema:{event_type}:v", f"events-schema/{event_type}/v"):
        if dataschema.startswith(prefix) and len(dataschema) > len(prefix):
            return dataschema[len(prefix) :]
    raise ContractViolation(
        f"dataschema {json.dumps(dataschema)} does not name {event_type}: expected "
        f"urn:conveyor:events-schema:{event_type}:v<N> (or events-schema/{event_type}/v<N>)"
    )


class Contract:
    """Every schema under ``schemas_dir`` (``<type>/v<N>.json``), compiled once."""

    def __init__(self, schemas_dir: str | Path, ceilings: dict[tuple[str, int, str], int] | None = None):
        self.schemas_dir = Path(schemas_dir)
        if not self.schemas_dir.is_dir():
            raise FileNotFoundError(f"schemas_dir {self.schemas_dir} is not a directory")
        self._ceilings = CEILINGS if ceilings is None else ceilings
        self._checker = _format_checker()
        self._schemas: dict[tuple[str, int], _Compiled] = {}
        for path in sorted(self.schemas_dir.glob("*/v*.json")):
            event_type = path.parent.name
            number = path.stem[1:]
            if event_type == "envelope" or not number.isdigit():
                continue
            self._schemas[(event_type, int(number))] = self._compile(event_type, int(number), path)

    def _compile(self, event_type: str, version: int, path: Path) -> _Compiled:
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        patterns: dict[str, str] = {}
        validator = Draft202012Validator(_translate_patterns(schema, patterns), format_checker=self._checker)
        integers = [
            (steps, self._ceilings.get((event_type, version, place_name(steps))))
            for steps in integer_places(schema)
        ]
        return _Compiled(validator, integers, patterns)

    def versions(self, event_type: str) -> list[int]:
        return sorted(version for (known, version) in self._schemas if known == event_type)

    def knows(self, event_type: str) -> bool:
        return bool(self.versions(event_type))

    def version_of(self, envelope: Envelope) -> int:
        """The catalog version ``envelope`` claims.

        Raises:
            ContractViolation: for a mismatched ``dataschema``, or an unknown type or version.
        """
        version = version_in(envelope.type, envelope.dataschema)
        number = int(version) if _VERSION_DIGITS.match(version) else None
        if number is not None and number <= 0xFFFF_FFFF and (envelope.type, number) in self._schemas:
            return number
        known = self.versions(envelope.type)
        if not known:
            raise ContractViolation(
                f"unknown event type {json.dumps(envelope.type)}: no schema in events-schema"
            )
        raise ContractViolation(
            f"{envelope.type} has no version v{version} (known: "
            f"{', '.join(f'v{v}' for v in known)}); it is not guessed at"
        )

    def check(self, envelope: Envelope) -> int:
        """Checks ``envelope.data``; answers its version.

        Raises:
            ContractViolation: naming every field at fault, as one text.
        """
        version = self.version_of(envelope)
        problems = self.problems(envelope.type, version, envelope.data)
        if problems:
            listed = "; ".join(f"{at or '(data)'}: {message}" for at, message in problems)
            raise ContractViolation(f"{envelope.type} v{version} is invalid: {listed}")
        return version

    def problems(self, event_type: str, version: int, data: Any) -> list[tuple[str, str]]:
        """(JSON pointer, what is wrong) for everything wrong with ``data``."""
        compiled = self._schemas[(event_type, version)]
        problems = []
        for error in compiled.validator.iter_errors(data):
            message = error.message
            if error.validator == "pattern":  # name the schema's pattern, not our translation
                original = compiled.patterns.get(str(error.validator_value), str(error.validator_value))
                message = f"{error.instance!r} does not match {original!r}"
            at = "".join(f"/{_pointer_token(str(part))}" for part in error.absolute_path)
            problems.append((at, message))
        for steps, ceiling in compiled.integers:
            for at, number in _numbers_at(data, steps, ""):
                message = integer_rule(number, ceiling)
                if message:
                    problems.append((at, message))
        _strings_with_nul(data, "", problems)
        return problems
