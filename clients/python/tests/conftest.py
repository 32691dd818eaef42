"""Fixtures against the real RabbitMQ and PostgreSQL: each test gets a vhost and a database of
its own, made before it and removed after it, so tests run in parallel (``pytest -n``) and
leave nothing behind.

Where they are (defaults: the local services of the dev machine and CI):
  CONVEYOR_TEST_AMQP        amqp://guest:guest@127.0.0.1:5672   (no vhost: each test adds its own)
  CONVEYOR_TEST_MANAGEMENT  http://guest:guest@127.0.0.1:15672
  CONVEYOR_TEST_DATABASE    postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Awaitable
from typing import Any, AsyncIterator, Callable, Iterator
from urllib.parse import quote, urlsplit

import aio_pika
import psycopg
import pytest

from conveyor_consumer import Consumer, ConsumerOptions, Names

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = REPO / "events-schema" / "schemas"
AMQP = os.environ.get("CONVEYOR_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672").rstrip("/")
MANAGEMENT = os.environ.get("CONVEYOR_TEST_MANAGEMENT", "http://guest:guest@127.0.0.1:15672").rstrip("/")
DATABASE = os.environ.get("CONVEYOR_TEST_DATABASE", "postgresql://postgres@127.0.0.1:5432/postgres")


# --- the management API ----------------------------------------------------------------------


def management(method: str, path: str, body: Any = None) -> Any:
    """One call to RabbitMQ's management API; the answer's JSON, if any."""
    parts = urlsplit(MANAGEMENT)
    base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    credentials = f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()
    request.add_header("authorization", "Basic " + base64.b64encode(credentials).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else None


def vhost_path(vhost: str) -> str:
    return quote(vhost, safe="")


def amqp_url(vhost: str, user: str = "", password: str = "") -> str:
    parts = urlsplit(AMQP)
    user = user or parts.username or "guest"
    password = password or parts.password or "guest"
    return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 5672}/{quote(vhost, safe='')}"


@pytest.fixture
def vhost() -> Iterator[str]:
    """A vhost of this test's own, with ``guest`` allowed everything in it."""
    name = f"conveyor-py-{uuid.uuid4().hex[:12]}"
    user = urlsplit(AMQP).username or "guest"
    management("PUT", f"/api/vhosts/{vhost_path(name)}")
    try:
        management(
            "PUT",
            f"/api/permissions/{vhost_path(name)}/{quote(user, safe='')}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        yield name
    finally:
        management("DELETE", f"/api/vhosts/{vhost_path(name)}")


@pytest.fixture
def broker_users() -> Iterator[Callable[..., str]]:
    """Makes broker users for one test (users are per broker: give them unique names);
    deletes them afterwards."""
    made: list[str] = []

    def make(name: str, password: str, vhost: str, configure: str = ".*", write: str = ".*", read: str = ".*") -> str:
        management("PUT", f"/api/users/{quote(name, safe='')}", {"password": password, "tags": ""})
        made.append(name)
        management(
            "PUT",
            f"/api/permissions/{vhost_path(vhost)}/{quote(name, safe='')}",
            {"configure": configure, "write": write, "read": read},
        )
        return name

    try:
        yield make
    finally:
        for name in made:
            try:
                management("DELETE", f"/api/users/{quote(name, safe='')}")
            except urllib.error.HTTPError:
                pass


@pytest.fixture
def database() -> Iterator[str]:
    """A database of this test's own; dropped (connections and all) afterwards."""
    name = f"conveyor_py_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DATABASE, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(DATABASE)
    url = parts._replace(path=f"/{name}").geturl()
    try:
        yield url
    finally:
        with psycopg.connect(DATABASE, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- events as a publisher sends them ---------------------------------------------------------


def envelope(event_type: str = "order.confirmed", data: dict | None = None, **attributes: Any) -> dict:
    """A valid envelope (``order.confirmed`` v1 by default); ``attributes`` override or, set
    to ``None``, remove attributes."""
    order_id = str(uuid.uuid4())
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/services/orders",
        "type": event_type,
        "time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "dataschema": f"events-schema/{event_type}/v1",
        "subject": order_id,
        "correlationid": order_id,
        "data": data
        if data is not None
        else {"order_id": order_id, "user_id": str(uuid.uuid4()), "total_cents": 2500, "currency": "EUR"},
    }
    for key, value in attributes.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return event


class Publisher:
    """Publishes as the protocol says a producer does: to ``conveyor.events`` (prefixed or
    not), routing key = type, mandatory and confirmed, persistent, ``message_id`` = id."""

    def __init__(self, connection: aio_pika.abc.AbstractConnection, channel: aio_pika.abc.AbstractChannel, names: Names, user: str):
        self.connection, self.channel, self.names, self.user = connection, channel, names, user

    async def event(self, event: dict, *, headers: dict | None = None) -> None:
        await self.raw(
            json.dumps(event).encode(),
            routing_key=event.get("type", "x"),
            message_id=event.get("id"),
            event_type=event.get("type"),
            correlation_id=event.get("correlationid"),
            headers=headers,
        )

    async def raw(
        self,
        body: bytes,
        *,
        routing_key: str,
        message_id: str | None = None,
        event_type: str | None = None,
        correlation_id: str | None = None,
        headers: dict | None = None,
        exchange: str | None = None,
    ) -> None:
        message = aio_pika.Message(
            body,
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            type=event_type,
            correlation_id=correlation_id,
            app_id="orders",
            timestamp=int(time.time()),
            user_id=self.user,
            headers=headers or {},
        )
        target = (
            self.channel.default_exchange
            if exchange == ""
            else await self.channel.get_exchange(exchange or self.names.events_exchange, ensure=False)
        )
        await target.publish(message, routing_key=routing_key, mandatory=True)


@asynccontextmanager
async def publisher(vhost: str, names: Names, user: str = "", password: str = "") -> AsyncIterator[Publisher]:
    url = amqp_url(vhost, user, password)
    connection = await aio_pika.connect(url, client_properties={"connection_name": "test publisher"})
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        yield Publisher(connection, channel, names, Consumer.broker_user(url))
    finally:
        await connection.close()


# --- running a consumer ----------------------------------------------------------------------


@asynccontextmanager
async def running(consumer: Consumer) -> AsyncIterator[Consumer]:
    """Runs ``consumer`` in the background until the block ends, then stops it cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(lambda: consumer.stats.connected or task.done(), timeout=15)
        if task.done():
            task.result()
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def wait_until(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Polls ``check`` (sync or async) until it is truthy; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        await asyncio.sleep(interval)


async def fetch_all(database_url: str, query: str, params: tuple = ()) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(query, params)
        return await cursor.fetchall()


async def dead_letters(vhost: str, names: Names, service: str, count: int, timeout: float = 15.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Takes ``count`` messages from ``<service>.dlq`` (acknowledged, so the queue empties)."""
    connection = await aio_pika.connect(amqp_url(vhost), client_properties={"connection_name": "test dlq reader"})
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(names.dead_letter_queue(service), passive=True)
        letters: list[aio_pika.abc.AbstractIncomingMessage] = []
        deadline = time.monotonic() + timeout
        while len(letters) < count:
            message = await queue.get(fail=False)
            if message is None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{len(letters)} dead letters within {timeout}s, expected {count}")
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            letters.append(message)
        return letters
    finally:
        await connection.close()


async def queue_depth(vhost: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url(vhost))
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await connection.close()


def make_consumer(vhost: str, database: str, *, service: str = "ledger-py", prefix: str = "", user: str = "", password: str = "", **options: Any) -> Consumer:
    options.setdefault("retry_tiers", (0.1, 0.2, 0.3))
    options.setdefault("backoff_max", 0.5)
    return Consumer(
        service=service,
        amqp_url=amqp_url(vhost, user, password),
        database_url=database,
        schemas_dir=SCHEMAS,
        name_prefix=prefix,
        options=ConsumerOptions(**options),
    )


LEDGER = """
CREATE TABLE ledger (
    event_id   UUID NOT NULL,
    order_id   UUID NOT NULL,
    total      BIGINT NOT NULL,
    attempt    INT NOT NULL
)"""


async def create_ledger(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(LEDGER)
