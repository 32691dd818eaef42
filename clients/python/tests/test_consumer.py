"""What a team checks of its consumer, against the real RabbitMQ and PostgreSQL: each event
has one effect, failures go through the retry tiers or land in ``<service>.dlq`` with the
protocol's headers, bad bodies never reach the handler, and a dropped connection loses
nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from typing import Any

import aio_pika
import psycopg

from conftest import (
    amqp_url,
    create_ledger,
    dead_letters,
    envelope,
    fetch_all,
    make_consumer,
    management,
    publisher,
    queue_depth,
    running,
    vhost_path,
    wait_until,
)
from conveyor_consumer import Consumer, Event, Names, Permanent, Transient
from conveyor_consumer.topology import ServiceTopology

SERVICE = "ledger-py"


def record(consumer: Consumer, *, fail: Any = None, seen: list | None = None) -> None:
    """Registers the test ledger's handler of ``order.confirmed``: it writes one row per run
    that commits; ``fail(event)`` may raise first."""

    @consumer.handler("order.confirmed")
    async def on_confirmed(event: Event, tx: psycopg.AsyncConnection) -> None:
        if seen is not None:
            seen.append(event)
        await tx.execute(
            "INSERT INTO ledger (event_id, order_id, total, attempt) VALUES (%s, %s, %s, %s)",
            (event.id, event.data["order_id"], event.data["total_cents"], event.attempt),
        )
        if fail is not None:
            fail(event)


async def ledger(database: str) -> list[tuple]:
    return await fetch_all(database, "SELECT event_id, attempt FROM ledger ORDER BY attempt")


async def inbox(database: str) -> list[tuple]:
    return await fetch_all(database, "SELECT consumer, message_id, attempt FROM conveyor.inbox")


async def test_an_event_is_handled_once_and_recorded_in_the_inbox(vhost: str, database: str) -> None:
    await create_ledger(database)
    consumer = make_consumer(vhost, database)
    seen: list[Event] = []
    record(consumer, seen=seen)
    async with running(consumer), publisher(vhost, consumer.names) as pub:
        first = envelope()
        # The urn form of dataschema, and v2, read as well as the relative v1 form.
        second = envelope(dataschema="urn:conveyor:events-schema:order.confirmed:v2")
        # No dataschema means v1. A producer's x-conveyor-attempts is not believed.
        third = envelope(dataschema=None)
        await pub.event(first)
        await pub.event(second)
        await pub.event(third, headers={"x-conveyor-attempts": 7})
        await wait_until(lambda: consumer.stats.handled == 3)
    rows = await ledger(database)
    assert sorted(str(r[0]) for r in rows) == sorted(e["id"] for e in (first, second, third))
    assert {r[1] for r in rows} == {1}, "attempt 1: the forged header counts as 0"
    assert sorted((c, str(m), a) for c, m, a in await inbox(database)) == sorted(
        (SERVICE, e["id"], 1) for e in (first, second, third)
    )
    versions = {str(e.id): e.version for e in seen}
    assert versions == {first["id"]: 1, second["id"]: 2, third["id"]: 1}
    assert await queue_depth(vhost, consumer.names.service_queue(SERVICE)) == 0


async def test_a_duplicate_delivery_has_one_effect(vhost: str, database: str) -> None:
    await create_ledger(database)
    consumer = make_consumer(vhost, database)
    record(consumer)
    async with running(consumer), publisher(vhost, consumer.names) as pub:
        event = envelope()
        await pub.event(event)
        await wait_until(lambda: consumer.stats.handled == 1)
        await pub.event(event)  # the same id again, as a redelivery or a producer's retry would
        await pub.event(event)
        await wait_until(lambda: consumer.stats.duplicates == 2)
    assert [str(r[0]) for r in await ledger(database)] == [event["id"]]
    assert len(await inbox(database)) == 1
    assert consumer.stats.dead_lettered == 0 and consumer.stats.retried == 0


async def test_transient_failures_go_through_the_retry_tiers_then_succeed(vhost: str, database: str) -> None:
    await create_ledger(database)
    consumer = make_consumer(vhost, database, retry_tiers=(0.1, 0.2, 0.3))
    seen: list[Event] = []

    def fail_twice(event: Event) -> None:
        if event.previous_attempts < 2:
            raise Transient(f"the bank is away (attempt {event.attempt})")

    record(consumer, fail=fail_twice, seen=seen)
    async with running(consumer), publisher(vhost, consumer.names) as pub:
        event = envelope()
        await pub.event(event)
        await wait_until(lambda: consumer.stats.handled == 1)
    # Only the third run committed: the failed runs' rows were rolled back with their inbox row.
    assert [(str(r[0]), r[1]) for r in await ledger(database)] == [(event["id"], 3)]
    assert [(c, str(m), a) for c, m, a in await inbox(database)] == [(SERVICE, event["id"], 3)]
    assert consumer.stats.retried == 2 and consumer.stats.dead_lettered == 0
    assert [e.previous_attempts for e in seen] == [0, 1, 2]
    # The retry copies came back through the default exchange with the protocol's headers.
    second, third = seen[1].headers, seen[2].headers
    assert second["x-conveyor-attempts"] == 1 and third["x-conveyor-attempts"] == 2
    assert third["x-conveyor-error"] == "the bank is away (attempt 2)"
    assert third["x-conveyor-original-exchange"] == "conveyor.events"
    assert third["x-conveyor-original-routing-key"] == "order.confirmed"
    assert third["x-conveyor-publisher"] == "guest"
    assert "x-conveyor-error-kind" not in third
    names = consumer.names
    assert await queue_depth(vhost, names.dead_letter_queue(SERVICE)) == 0
    for queue in ("ledger-py.retry.100ms", "ledger-py.retry.200ms", "ledger-py.retry.300ms"):
        assert await queue_depth(vhost, queue) == 0


async def test_retries_exhausted_are_dead_lettered_with_every_attempt_counted(vhost: str, database: str) -> None:
    await create_ledger(database)
    consumer = make_consumer(vhost, database, retry_tiers=(0.05, 0.1))

    def always(event: Event) -> None:
        raise ConnectionError("the bank is down")  # any exception: transient

    record(consumer, fail=always)
    async with running(consumer), publisher(vhost, consumer.names) as pub:
        event = envelope()
        await pub.event(event)
        [letter] = await dead_letters(vhost, consumer.names, SERVICE, 1)
    headers = letter.headers
    assert headers["x-conveyor-error-kind"] == "retries-exhausted"
    assert headers["x-conveyor-attempts"] == 3, "two tiers, then the third failure has none left"
    assert headers["x-conveyor-error"] == "ConnectionError: the bank is down"
    assert letter.body == json.dumps(event).encode()
    assert await ledger(database) == [] and await inbox(database) == []


async def test_a_permanent_failure_is_dead_lettered_at_once_with_the_protocols_headers(vhost: str, database: str) -> None:
    await create_ledger(database)
    consumer = make_consumer(vhost, database)

    def refuse(event: Event) -> None:
        raise Permanent("order " + event.data["order_id"] + " is in no ledger" + " é" * 800)

    record(consumer, fail=refuse)
    async with running(consumer), publisher(vhost, consumer.names) as pub:
        event = envelope()
        body = json.dumps(event).encode()
        await pub.event(event, headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x-conveyor-replay-run": "run-1"})
        [letter] = await dead_letters(vhost, consumer.names, SERVICE, 1)
    headers = letter.headers
    assert letter.body == body, "the body, byte for byte"
    assert headers["x-conveyor-service"] == SERVICE
    assert headers["x-conveyor-error-kind"] == "permanent"
    assert headers["x-conveyor-attempts"] == 1
    error = headers["x-conveyor-error"]
    assert error.startswith(f"order {event['data']['order_id']} is in no ledger é")
    assert len(error.encode()) <= 1000 and len(error.encode()) >= 998, "cut at 1,000 bytes, on a character boundary"
    failed_at = headers["x-conveyor-failed-at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00", failed_at), failed_at
    assert headers["x-conveyor-original-exchange"] == "conveyor.events"
    assert headers["x-conveyor-original-routing-key"] == "order.confirmed"
    assert headers["x-conveyor-publisher"] == "guest"
    # The delivery's other headers stay, trace context and replay run above all.
    assert headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert headers["x-conveyor-replay-run"] == "run-1"
    # Properties kept from the delivery; persistent; user_id the consumer's own.
    assert letter.message_id == event["id"]
    assert letter.type == "order.confirmed"
    assert letter.correlation_id == event["correlationid"]
    assert letter.app_id == "orders"
    assert letter.content_type == "application/cloudevents+json"
    assert letter.timestamp is not None
    assert letter.delivery_mode == 2
    assert letter.user_id == "guest"
    # Its work was rolled back with its inbox row.
    assert await ledger(database) == [] and await inbox(database) == []


async def test_bodies_that_break_the_contract_are_dead_lettered_by_kind_without_running_the_handler(vhost: str, database: str) -> None:
    await create_ledger(database)
    consumer = make_consumer(vhost, database)
    record(consumer)
    good = envelope()
    data = good["data"]
    schema_cases = {
        "an integer written as 1.0": envelope(data={**data, "total_cents": 1.0}),
        "-0": envelope(data={**data, "total_cents": "MINUS_ZERO"}),
        "over the v1 ceiling": envelope(data={**data, "total_cents": 1_000_000_000_001}),
        "a trailing newline": envelope(data={**data, "currency": "EUR\n"}),
        "a NUL": envelope(data={**data, "user_id": data["user_id"], "note": "a\u0000b"}),
        "a missing field": envelope(data={k: v for k, v in data.items() if k != "order_id"}),
        "another type's dataschema": envelope(dataschema="events-schema/order.created/v1"),
        "an unknown version": envelope(dataschema="urn:conveyor:events-schema:order.confirmed:v9"),
    }
    malformed_cases = {
        "no correlationid": envelope(correlationid=None),
        "specversion 0.3": envelope(specversion="0.3"),
        "a blank type": envelope(type="  "),
        "a bad id": envelope(id="not-a-uuid"),
    }
    async with running(consumer), publisher(vhost, consumer.names) as pub:
        expected: dict[str, str] = {}
        for name, event in schema_cases.items():
            body = json.dumps(event).replace('"MINUS_ZERO"', "-0").encode()
            await pub.raw(body, routing_key="order.confirmed", message_id=event["id"], event_type="order.confirmed")
            expected[event["id"]] = "schema"
        for name, event in malformed_cases.items():
            await pub.raw(json.dumps(event).encode(), routing_key="order.confirmed", message_id=event["id"])
            expected[event["id"]] = "malformed"
        not_json_id = str(uuid.uuid4())
        await pub.raw(b"{not json", routing_key="order.confirmed", message_id=not_json_id)
        expected[not_json_id] = "malformed"
        # A type this service has no handler for, straight into its queue (as a replay does).
        other = envelope("order.cancelled", data={"order_id": data["order_id"], "reason": "x"})
        await pub.raw(json.dumps(other).encode(), routing_key=consumer.names.service_queue(SERVICE), message_id=other["id"], exchange="")
        expected[other["id"]] = "unknown-type"
        await pub.event(good)
        letters = await dead_letters(vhost, consumer.names, SERVICE, len(expected))
        await wait_until(lambda: consumer.stats.handled == 1)
    kinds = {letter.message_id: letter.headers["x-conveyor-error-kind"] for letter in letters}
    assert kinds == expected
    for letter in letters:
        assert letter.headers["x-conveyor-attempts"] == 0, "a check before the handler: attempts before it"
        assert letter.headers["x-conveyor-service"] == SERVICE
    errors = {letter.message_id: letter.headers["x-conveyor-error"] for letter in letters}
    assert "is not written as an integer" in errors[schema_cases["-0"]["id"]]
    assert "ceiling of 1000000000000" in errors[schema_cases["over the v1 ceiling"]["id"]]
    assert "NUL" in errors[schema_cases["a NUL"]["id"]]
    assert "missing field `correlationid`" in errors[malformed_cases["no correlationid"]["id"]]
    assert [str(r[0]) for r in await ledger(database)] == [good["id"]], "only the good event ran the handler"


async def test_an_oversize_body_is_dead_lettered_as_malformed_intact(vhost: str, database: str) -> None:
    await create_ledger(database)
    consumer = make_consumer(vhost, database)
    record(consumer)
    event = envelope(data={**envelope()["data"], "padding": "x" * (300 * 1024)})
    body = json.dumps(event).encode()
    async with running(consumer), publisher(vhost, consumer.names) as pub:
        await pub.event(event)
        [letter] = await dead_letters(vhost, consumer.names, SERVICE, 1)
    assert letter.headers["x-conveyor-error-kind"] == "malformed"
    assert "over this consumer's limit of 262144 bytes" in letter.headers["x-conveyor-error"]
    assert hashlib.sha256(letter.body).digest() == hashlib.sha256(body).digest()
    assert await ledger(database) == []


async def test_a_connection_dropped_mid_run_loses_nothing(vhost: str, database: str) -> None:
    await create_ledger(database)
    consumer = make_consumer(vhost, database, batch_size=5, workers=2)

    @consumer.handler("order.confirmed")
    async def on_confirmed(event: Event, tx: psycopg.AsyncConnection) -> None:
        await asyncio.sleep(0.01)
        await tx.execute(
            "INSERT INTO ledger (event_id, order_id, total, attempt) VALUES (%s, %s, %s, %s)",
            (event.id, event.data["order_id"], event.data["total_cents"], event.attempt),
        )

    count = 200
    events = [envelope() for _ in range(count)]
    async with running(consumer), publisher(vhost, consumer.names) as pub:
        for event in events:
            await pub.event(event)
        await wait_until(lambda: consumer.stats.handled >= count // 4, timeout=20)
        # Drop every connection of the consumer, as a broker restart or a network cut would.
        await wait_until(lambda: _close_connections(vhost, consumer.service) > 0, timeout=20)
        await wait_until(lambda: consumer.stats.sessions >= 2 and consumer.stats.connected, timeout=20)
        await wait_until(lambda: _handled_rows(database, count), timeout=30)
    rows = await fetch_all(database, "SELECT event_id, count(*) FROM ledger GROUP BY event_id")
    assert sorted(str(r[0]) for r in rows) == sorted(e["id"] for e in events), "every event handled"
    assert all(r[1] == 1 for r in rows), "and each exactly once"
    assert len(await inbox(database)) == count
    assert await queue_depth(vhost, consumer.names.service_queue(SERVICE)) == 0
    assert await queue_depth(vhost, consumer.names.dead_letter_queue(SERVICE)) == 0


def _close_connections(vhost: str, service: str) -> int:
    closed = 0
    for connection in management("GET", f"/api/vhosts/{vhost_path(vhost)}/connections") or []:
        name = (connection.get("client_properties") or {}).get("connection_name", "")
        if name.startswith(service):
            management("DELETE", f"/api/connections/{vhost_path(connection['name'])}")
            closed += 1
    return closed


async def _handled_rows(database: str, count: int) -> bool:
    rows = await fetch_all(database, "SELECT count(DISTINCT event_id) FROM ledger")
    return rows[0][0] >= count


async def test_its_own_broker_user_with_least_privilege_checks_sources(vhost: str, database: str, broker_users: Any) -> None:
    """Connected as ``conveyor-<service>`` (here under a prefix of the test's own, since users
    are per broker), the consumer takes an event only from its owner's user, believes
    ``x-conveyor-publisher`` on its own retry copies, and, not allowed to declare anything,
    checks passively that the operator's topology is there."""
    await create_ledger(database)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    names = Names(prefix)
    own = broker_users(names.broker_user(SERVICE), "ledger-secret", vhost, configure="^$")
    owner = broker_users(names.broker_user("orders"), "orders-secret", vhost)
    # The operator's `conveyor topology apply`, here as guest.
    operator = await aio_pika.connect(amqp_url(vhost))
    try:
        await ServiceTopology.for_service(names, SERVICE, ["order.confirmed"], [100, 200, 300]).declare(operator)
    finally:
        await operator.close()
    consumer = make_consumer(vhost, database, prefix=prefix, user=own, password="ledger-secret")

    def fail_once(event: Event) -> None:
        if event.previous_attempts == 0:
            raise Transient("once")

    record(consumer, fail=fail_once)
    async with running(consumer):
        async with publisher(vhost, names, owner, "orders-secret") as pub:
            from_owner = envelope()
            await pub.event(from_owner)
        async with publisher(vhost, names) as pub:  # guest may not publish order.confirmed
            forged = envelope(source="/services/orders")
            await pub.event(forged)
        [letter] = await dead_letters(vhost, names, SERVICE, 1)
        await wait_until(lambda: consumer.stats.handled == 1)
    assert letter.message_id == forged["id"]
    assert letter.headers["x-conveyor-error-kind"] == "forbidden-source"
    assert f"{prefix}.conveyor-orders" in letter.headers["x-conveyor-error"]
    assert "broker user guest" in letter.headers["x-conveyor-error"]
    assert letter.user_id == own
    # The owner's event failed once, came back from the retry queue published by the
    # consumer's own user with the owner in x-conveyor-publisher, and was believed.
    assert [(str(r[0]), r[1]) for r in await ledger(database)] == [(from_owner["id"], 2)]


async def test_a_key_held_elsewhere_is_a_conflict_retried_without_counting_an_attempt(vhost: str, database: str) -> None:
    """The consumer takes the same advisory lock ids as the Rust runtime: a Rust replica
    holding the key's lock (here, a session lock on the id ``key_lock_id`` gives) keeps the
    event waiting; past ``lock_timeout`` it goes to the first tier, its attempt not counted."""
    from conveyor_consumer import key_lock_id

    await create_ledger(database)
    consumer = make_consumer(vhost, database, lock_timeout=0.2, retry_tiers=(0.1, 0.2, 0.3))
    seen: list[Event] = []
    record(consumer, seen=seen)
    event = envelope()
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as replica:
        await replica.execute("SELECT pg_advisory_lock(%s)", (key_lock_id(SERVICE, event["subject"]),))
        async with running(consumer), publisher(vhost, consumer.names) as pub:
            await pub.event(event)
            await wait_until(lambda: consumer.stats.retried >= 2)
            await replica.execute("SELECT pg_advisory_unlock_all()")
            await wait_until(lambda: consumer.stats.handled == 1)
    assert [(str(r[0]), r[1]) for r in await ledger(database)] == [(event["id"], 1)], "no attempt counted"
    assert [(c, str(m), a) for c, m, a in await inbox(database)] == [(SERVICE, event["id"], 1)]
    [handled] = seen
    assert handled.headers["x-conveyor-attempts"] == 0
    assert "held the lock of key" in handled.headers["x-conveyor-error"]
    assert await queue_depth(vhost, consumer.names.dead_letter_queue(SERVICE)) == 0
