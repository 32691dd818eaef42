"""The protocol's rules that need no broker: envelope reading, the contract's extra checks,
lock ids, names, headers of copies, error classification; and that the tables copied from
the Rust crates still match them."""

from __future__ import annotations

import json
import re
import struct
import uuid

import pamqp.encode
import psycopg.errors
import pytest
from pamqp.commands import Basic

from conftest import REPO, SCHEMAS, envelope
from conveyor_consumer import Contract, ContractViolation, Int64, MalformedError, Names, key_lock_id, parse_envelope
from conveyor_consumer.contract import CEILINGS, ecma_pattern, integer_rule, is_email, version_in
from conveyor_consumer.errors import Permanent, Transient, classify_handler_error, database_unavailable, describe
from conveyor_consumer.envelope import loads_strict
from conveyor_consumer.key_lock import lock_ids
from conveyor_consumer.names import tier_label
from conveyor_consumer.outcome import (
    DeadLetter,
    DeadLetterKind,
    Retry,
    capped,
    conflict,
    copy_of,
    failed_at,
    previous_attempts,
    transient,
    truncate,
)
from conveyor_consumer.source import INGESTIBLE, OWNERS, SourceRule
from conveyor_consumer.topology import ServiceTopology


def body(event: dict) -> bytes:
    return json.dumps(event).encode()


# --- lock ids and names ----------------------------------------------------------------------


def test_lock_ids_are_the_rust_runtimes() -> None:
    assert key_lock_id("payments", "order-1") == -6208908746464398349
    assert key_lock_id("", "") == -5808391946409677970
    assert key_lock_id("ab", "c") != key_lock_id("a", "bc")
    ids = lock_ids("inventory", ["b", "a", "b", "c"])
    assert len(ids) == 3 and ids == sorted(ids)


def test_names_prefix_everything_but_the_dead_letter_key() -> None:
    blue = Names("blue")
    assert blue.events_exchange == "blue.conveyor.events"
    assert blue.service_queue("orders") == "blue.orders.events"
    assert blue.broker_user("orders") == "blue.conveyor-orders"
    assert blue.dead_letter_routing_key("orders") == "orders"
    assert blue.retry_queue("orders", 1500) == "blue.orders.retry.1500ms"
    assert [tier_label(ms) for ms in (1000, 10_000, 60_000, 1500, 100)] == ["1s", "10s", "60s", "1500ms", "100ms"]
    for bad in ("a.b", "amq", "-x", "x" * 65, " "):
        with pytest.raises(ValueError):
            Names(bad)


def test_a_double_header_goes_out_as_the_double_it_came_in_as() -> None:
    table = pamqp.encode.field_table({"big": 1e300, "tenth": 0.1})
    assert b"\x03bigd" + struct.pack(">d", 1e300) in table
    assert b"\x05tenthd" + struct.pack(">d", 0.1) in table


def test_numbers_go_out_as_signed_64_bit_integers() -> None:
    table = pamqp.encode.field_table({"n": Int64(50), "s": "quorum", "small": 50})
    assert b"\x01nl" + struct.pack(">q", 50) in table
    assert b"\x01sS" in table
    assert b"\x05smallb" in table, "other ints are encoded as before"
    topology = ServiceTopology.for_service(Names(), "ledger-py", ["order.confirmed"], [1000])
    arguments = {queue.name: queue.arguments for queue in topology.queues}
    assert type(arguments["ledger-py.events"]["x-delivery-limit"]) is Int64
    assert type(arguments["ledger-py.retry.1s"]["x-message-ttl"]) is Int64
    assert arguments["ledger-py.retry.1s"]["x-dead-letter-exchange"] == ""


# --- the envelope ----------------------------------------------------------------------------


def test_an_envelope_reads_with_serde_jsons_verdicts() -> None:
    event = envelope()
    parsed = parse_envelope(body(event))
    assert str(parsed.id) == event["id"] and parsed.type == "order.confirmed"
    # Other forms of a UUID the Rust uuid crate reads; null reads as absent.
    braced = envelope(id="{" + str(uuid.uuid4()).upper() + "}", causationid=None, subject=None)
    braced["causationid"] = None
    assert parse_envelope(body(braced)).causation_id is None
    parse_envelope(body(envelope(id="urn:uuid:" + str(uuid.uuid4()))))
    parse_envelope(body(envelope(id=uuid.uuid4().hex)))
    # Unknown attributes are ignored, and may repeat; a known one may not.
    assert parse_envelope(body(envelope(extension="x"))).type == "order.confirmed"
    text = body(event).decode()
    with pytest.raises(MalformedError, match="duplicate field `type`"):
        parse_envelope(text.replace('"specversion"', '"type": "order.confirmed", "specversion"').encode())
    parse_envelope(text.replace('"specversion"', '"ext": 1, "ext": 2, "specversion"').encode())


def test_json_as_deep_as_serde_json_takes_reads() -> None:
    deepest = loads_strict(b'{"a": ' + b"[" * 126 + b"]" * 126 + b"}")["a"]
    for _ in range(125):
        deepest = deepest[0]
    assert deepest == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "utf-8"),
        ('{"a": "\\ud800"}'.encode(), "surrogate"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": 1e400}', "out of range"),
        (b"[]", "expected a JSON object"),
        # serde_json's recursion limit: 128 levels, or a thousand, which would take Python's
        # recursive parser (and the consumer with it) down.
        (b'{"a": ' + b"[" * 127 + b"]" * 127 + b"}", "recursion limit"),
        (b'{"a": ' + b"[" * 1500 + b"]" * 1500 + b"}", "recursion limit"),
    ],
)
def test_what_serde_json_refuses_is_malformed(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedError, match=re.escape(reason) if reason != "utf-8" else "utf-8"):
        parse_envelope(raw)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"correlationid": None}, "missing field `correlationid`"),
        ({"data": None}, "missing field `data`"),
        ({"specversion": "0.3"}, "unsupported CloudEvents specversion"),
        ({"type": " \u3000"}, "event type is empty"),
        ({"id": "uuid:" + str(uuid.uuid4())}, "`id`"),
        ({"id": str(uuid.uuid4()) + "-"}, "`id`"),
        ({"time": "26 Nov 2026"}, "`time`"),
        ({"time": "2026-02-30T00:00:00Z"}, "`time`"),
        ({"source": 7}, "`source` must be a string"),
    ],
)
def test_what_the_rust_envelope_refuses_is_malformed(change: dict, reason: str) -> None:
    event = envelope(**{key: value for key, value in change.items() if key != "data"})
    if "data" in change:
        del event["data"]  # `data=None` would mean the default data to `envelope`
    with pytest.raises(MalformedError, match=re.escape(reason)):
        parse_envelope(body(event))


def test_times_read_as_rfc_3339() -> None:
    for text in ("2026-11-26T08:00:00Z", "2026-11-26t08:00:00.123456789z", "2026-11-26 08:00:00+01:00", "2026-11-26T08:00:00 UTC"):
        parse_envelope(body(envelope(time=text)))


# --- the contract ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(SCHEMAS)


def check(contract: Contract, data: dict, dataschema: str | None = "events-schema/order.confirmed/v1") -> str | None:
    raw = body(envelope(data=data, dataschema=dataschema)).replace(b'"MINUS_ZERO"', b"-0")
    try:
        contract.check(parse_envelope(raw))
    except ContractViolation as violation:
        return str(violation)
    return None


def good_data() -> dict:
    return {"order_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()), "total_cents": 2500, "currency": "EUR"}


def test_the_contract_checks_more_than_a_stock_validator(contract: Contract) -> None:
    assert check(contract, good_data()) is None
    assert check(contract, {**good_data(), "extra": "allowed"}) is None
    for value, words in [
        (1.0, "not written as an integer"),
        ("MINUS_ZERO", "not written as an integer"),
        (1e3, "not written as an integer"),
        (2**63, "the largest integer an event may carry"),
        (2**64, "not written as an integer"),
        (1_000_000_000_001, "ceiling of 1000000000000"),
        (1.5, "is not of type 'integer'"),
    ]:
        error = check(contract, {**good_data(), "total_cents": value})
        assert error is not None and words in error, (value, error)
    assert "ceiling" not in (check(contract, {**good_data(), "total_cents": 1_000_000_000_000}) or "")
    # v2 states its ceiling as `maximum`.
    error = check(contract, {**good_data(), "total_cents": 1_000_000_000_001}, "urn:conveyor:events-schema:order.confirmed:v2")
    assert error is not None and "order.confirmed v2 is invalid" in error
    assert "NUL" in (check(contract, {**good_data(), "note": ["a\u0000"]}) or "")
    assert "'^[A-Z]{3}$'" in (check(contract, {**good_data(), "currency": "EUR\n"}) or "")
    assert "is not a 'uuid'" in (check(contract, {**good_data(), "order_id": "0192F1C4-7E1A-7C3B-9D2E-4F5A6B7C8D9"}) or "")


def test_dataschema_names_the_type_and_version(contract: Contract) -> None:
    assert version_in("order.confirmed", None) == "1"
    assert version_in("order.confirmed", "events-schema/order.confirmed/v2") == "2"
    assert version_in("order.confirmed", "urn:conveyor:events-schema:order.confirmed:v2") == "2"
    for wrong in ("events-schema/order.created/v1", "urn:conveyor:events-schema:order.confirmed:v", "v1"):
        with pytest.raises(ContractViolation, match="does not name order.confirmed"):
            version_in("order.confirmed", wrong)
    assert "has no version v9 (known: v1, v2)" in (check(contract, good_data(), "events-schema/order.confirmed/v9") or "")
    assert "has no version vx" in (check(contract, good_data(), "events-schema/order.confirmed/vx") or "")
    assert check(contract, good_data(), "events-schema/order.confirmed/v01") is None, "Rust reads 01 as 1"


def test_formats_are_asserted_as_the_rust_validator_does() -> None:
    assert is_email("ada@example.com") and is_email('"a b"@example.com') and is_email("a@[192.0.2.1]")
    for bad in ("ada", "ada@", "@example.com", "a..b@example.com", "ada@-x.com", "adé@example.com", "a@b_c.com"):
        assert not is_email(bad), bad
    assert ecma_pattern("^[A-Z]{3}$") == r"^[A-Z]{3}\Z"
    assert ecma_pattern(r"^[$\d]\d\$$") == r"^[$0-9][0-9]\$\Z"
    assert integer_rule(5, None) is None


def test_every_schema_of_the_catalog_compiles(contract: Contract) -> None:
    files = [p for p in SCHEMAS.glob("*/v*.json") if p.parent.name != "envelope"]
    assert len(files) == sum(len(contract.versions(t)) for t in {p.parent.name for p in files})


# --- tables copied from the Rust crates --------------------------------------------------------

RUST_MONEY = REPO / "events-schema" / "src" / "money.rs"
RUST_PUBLISHERS = REPO / "events-schema" / "src" / "publishers.rs"


@pytest.mark.skipif(not RUST_MONEY.exists(), reason="outside the Conveyor repository")
def test_the_money_ceilings_are_the_rust_contracts() -> None:
    text = RUST_MONEY.read_text()
    maxima = {"MAX_PRICE_CENTS": 10_000_000_000, "MAX_TOTAL_CENTS": 1_000_000_000_000}
    for name, value in maxima.items():
        assert re.search(rf"pub const {name}: i64 = {value:_};", text), name
    rust = {
        (event_type, 1, field): maxima[maximum]
        for event_type, field, maximum in re.findall(r'ceiling\("([^"]+)", "([^"]+)", (MAX_\w+)\)', text)
    }
    assert rust == CEILINGS


@pytest.mark.skipif(not RUST_PUBLISHERS.exists(), reason="outside the Conveyor repository")
def test_the_owners_are_the_rust_contracts() -> None:
    text = RUST_PUBLISHERS.read_text()
    owners_block = text.split("pub const OWNERS")[1].split("];")[0]
    assert dict(re.findall(r'\("([^"]+)", "([^"]+)"\)', owners_block)) == OWNERS
    ingestible = text.split("pub const INGESTIBLE")[1].split("];")[0]
    assert set(re.findall(r'"([^"]+)"', ingestible)) == INGESTIBLE


# --- outcomes and copies ---------------------------------------------------------------------


def test_errors_are_cut_at_1000_bytes_on_a_character_boundary() -> None:
    long = "a" + "é" * 1000
    cut = truncate(long)
    assert len(cut.encode()) == 999 and cut.endswith("é")
    assert capped(long).endswith("…") and capped("short") == "short"


def test_failed_at_writes_the_fraction_as_chrono_does() -> None:
    second = 1_795_680_000 * 10**9
    assert failed_at(second) == "2026-11-26T08:00:00+00:00"
    assert failed_at(second + 123_000_000) == "2026-11-26T08:00:00.123+00:00"
    assert failed_at(second + 123_456_000) == "2026-11-26T08:00:00.123456+00:00"
    assert failed_at(second + 123_456_789) == "2026-11-26T08:00:00.123456789+00:00"


def test_transient_failures_walk_the_tiers_and_conflicts_do_not_count() -> None:
    tiers = [1000, 10_000, 60_000]
    assert [transient(tiers, n, "x") for n in (1, 2, 3)] == [Retry(1000, 1, "x"), Retry(10_000, 2, "x"), Retry(60_000, 3, "x")]
    assert transient(tiers, 4, "x") == DeadLetter(DeadLetterKind.RETRIES_EXHAUSTED, "x", 4)
    assert conflict(tiers, 2, "busy") == Retry(1000, 2, "busy")


def test_attempts_are_believed_only_from_the_default_exchange() -> None:
    assert previous_attempts("conveyor.events", {"x-conveyor-attempts": 3}) == 0
    assert previous_attempts("", {"x-conveyor-attempts": 3}) == 3
    assert previous_attempts("", {"x-conveyor-attempts": "2"}) == 2
    assert previous_attempts("", {"x-conveyor-attempts": True}) == 0
    assert previous_attempts("", {"x-conveyor-attempts": -1}) == 0
    assert previous_attempts("", {}) == 0


def properties(user_id: str | None, **headers: object) -> Basic.Properties:
    return Basic.Properties(
        content_type="application/cloudevents+json",
        headers=dict(headers),
        delivery_mode=1,
        message_id="m-1",
        expiration="60000",
        user_id=user_id,
        app_id="orders",
    )


def make_copy(outcome: Retry | DeadLetter, exchange: str, props: Basic.Properties, connected_as: str = "conveyor-ledger") -> Basic.Properties:
    return copy_of(
        outcome,
        names=Names(),
        service="ledger",
        connected_as=connected_as,
        exchange=exchange,
        routing_key="order.confirmed" if exchange else "ledger.events",
        delivery_tag=1,
        body=b"{}",
        properties=props,
    ).properties


def test_copies_carry_the_protocols_headers_and_properties() -> None:
    first = make_copy(Retry(1000, 1, "e"), "conveyor.events", properties("conveyor-orders", **{"x-conveyor-original-exchange": "forged"}))
    assert first.headers["x-conveyor-original-exchange"] == "conveyor.events", "never taken from a producer"
    assert first.headers["x-conveyor-original-routing-key"] == "order.confirmed"
    assert first.headers["x-conveyor-publisher"] == "conveyor-orders"
    assert type(first.headers["x-conveyor-attempts"]) is Int64
    assert "x-conveyor-error-kind" not in first.headers
    assert first.delivery_mode == 2 and first.expiration is None and first.user_id == "conveyor-ledger"
    assert first.priority is None, "no priority invented"
    # Back from the retry queue, published by the consumer's own user: kept, and believed.
    again = make_copy(DeadLetter(DeadLetterKind.PERMANENT, "p", 2), "", properties("conveyor-ledger", **first.headers))
    assert again.headers["x-conveyor-original-exchange"] == "conveyor.events"
    assert again.headers["x-conveyor-publisher"] == "conveyor-orders"
    assert again.headers["x-conveyor-error-kind"] == "permanent"
    assert again.headers["x-conveyor-service"] == "ledger"
    # No user_id: the publisher is unknown, and the header goes.
    unknown = make_copy(Retry(1000, 1, "e"), "conveyor.events", properties(None, **{"x-conveyor-publisher": "conveyor-orders"}))
    assert "x-conveyor-publisher" not in unknown.headers
    # The operator's replay without a publisher header names the operator.
    replay = make_copy(Retry(1000, 1, "e"), "", properties("conveyor-operator"))
    assert replay.headers["x-conveyor-publisher"] == "conveyor-operator"


def test_the_source_check_applies_only_to_the_services_own_user() -> None:
    names = Names()
    assert SourceRule(names, "ledger", "guest").check("order.confirmed", None, {}) is None
    rule = SourceRule(names, "ledger", "conveyor-ledger")
    assert rule.check("order.confirmed", "conveyor-orders", {}) is None
    assert "came from broker user conveyor-payments" in rule.check("order.confirmed", "conveyor-payments", {})
    assert "carries no user_id" in rule.check("order.confirmed", None, {})
    assert rule.check("product.created", "conveyor-gateway", {}) is None
    header = {"x-conveyor-publisher": "conveyor-orders"}
    assert rule.check("order.confirmed", "conveyor-ledger", header) is None
    assert rule.check("order.confirmed", "conveyor-operator", header) is None
    assert rule.check("order.confirmed", "conveyor-payments", header) is not None, "believed only from relays"
    assert "nobody" in rule.check("team.thing", "conveyor-orders", {})
    own = SourceRule(names, "ledger", "conveyor-ledger", {"team.thing": ["loyalty"]})
    assert own.check("team.thing", "conveyor-loyalty", {}) is None


def test_handler_errors_are_classified_as_the_protocol_says() -> None:
    assert classify_handler_error(Permanent("x")) == "permanent"
    assert classify_handler_error(Transient("x")) == "transient"
    assert classify_handler_error(ValueError("x")) == "transient"
    for error in (psycopg.errors.UniqueViolation(), psycopg.errors.ForeignKeyViolation(), psycopg.errors.NotNullViolation(),
                  psycopg.errors.CheckViolation(), psycopg.errors.CharacterNotInRepertoire(), psycopg.errors.ProgramLimitExceeded()):
        assert classify_handler_error(error) == "permanent", error
    for error in (psycopg.errors.LockNotAvailable(), psycopg.errors.DeadlockDetected(), psycopg.errors.SerializationFailure()):
        assert classify_handler_error(error) == "conflict", error
    try:
        try:
            raise psycopg.errors.LockNotAvailable()
        except psycopg.Error as cause:
            raise Transient("busy") from cause
    except Transient as wrapped:
        assert classify_handler_error(wrapped) == "conflict"
        assert describe(wrapped).startswith("busy: LockNotAvailable")
    assert classify_handler_error(psycopg.errors.UndefinedTable()) == "transient"
    assert database_unavailable(psycopg.OperationalError("connection refused"))
    assert database_unavailable(psycopg.errors.AdminShutdown())
    assert not database_unavailable(psycopg.errors.InFailedSqlTransaction())
    assert not database_unavailable(psycopg.errors.UniqueViolation())
