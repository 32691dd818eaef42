"""The consumer loop: deliveries in, one transaction per batch with the inbox, acknowledgements
only after the commit or after a copy's confirm.

Per broker session: one connection that consumes and acknowledges, and a second one, in
confirm mode, for retry copies and dead letters, so that a memory alarm (which blocks
publishing connections) never stops acknowledgements. Each worker has a channel on each, its
own prefetch window and its own database connection. A lost connection, a copy not confirmed
in time or a consumer cancelled by the broker ends the session: whatever was not acknowledged
returns to the queue, the inbox turns what was already handled into duplicates, and the
session is opened again with backoff. Nothing is ever nacked, rejected or requeued.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence
from urllib.parse import unquote, urlsplit

import aio_pika
import psycopg
from aiormq.abc import DeliveredMessage

from . import inbox
from .backoff import Backoff, sleep_or_stop
from .contract import Contract, ContractViolation
from .envelope import Envelope, MalformedError, parse_envelope
from .errors import LOCK_CONFLICTS, classify_handler_error, database_unavailable, describe, sqlstate
from .event import Event
from .key_lock import lock_ids
from .names import Names
from .outcome import (
    DeadLetter,
    DeadLetterKind,
    Duplicate,
    Handled,
    Outcome,
    Retry,
    conflict,
    dead_letter,
    previous_attempts,
    transient,
)
from .settle import SessionError, Settler
from .source import SourceRule
from .topology import ServiceTopology

log = logging.getLogger("conveyor_consumer")

Handler = Callable[[Event, psycopg.AsyncConnection], Awaitable[None]]
Keys = Callable[[Event], Iterable[str]]
Decode = Callable[[Any], Any]

#: Times a batch's transaction may be refused (not the database being away) before its
#: deliveries are tried one at a time, and a single one is dead-lettered as ``permanent``.
REFUSALS_BEFORE_DEAD_LETTER = 3

_LOCK_ALL = "SELECT pg_advisory_xact_lock(id) FROM unnest(%s::bigint[]) AS id"
_TRY_LOCK_ALL = (
    "SELECT coalesce(bool_and(pg_try_advisory_xact_lock(id)), true) FROM unnest(%s::bigint[]) AS id"
)


@dataclass
class ConsumerOptions:
    """How the consumer takes work; the defaults are the Rust runtime's."""

    #: Channels consuming in parallel, each with its batches and its database connection.
    workers: int = 2
    #: Unacknowledged deliveries the broker may send each channel (``basic.qos``).
    prefetch: int = 200
    #: Deliveries handled in one transaction at most (the first plus what is buffered).
    batch_size: int = 100
    #: A larger body is dead-lettered as ``malformed`` before it is parsed.
    max_body_bytes: int = 256 * 1024
    #: Delays (seconds) before the 1st, 2nd, … retry. A consumer sharing a queue with Rust
    #: replicas must keep theirs, or copies go to a retry queue nobody declared.
    retry_tiers: Sequence[float] = (1.0, 10.0, 60.0)
    #: The longest a transaction waits for a key's lock (``SET LOCAL lock_timeout``).
    lock_timeout: float = 20.0
    #: How long a handling transaction may sit idle before Postgres ends it.
    idle_transaction_timeout: float = 60.0
    #: The longest the broker may take to confirm a copy; past it the session is reset.
    publish_timeout: float = 30.0
    #: Connecting, declaring the topology and opening the channels, at most.
    setup_timeout: float = 30.0
    #: On stopping, how long pending copies get to be confirmed, and each close to answer.
    close_timeout: float = 5.0
    #: Delays between attempts while the broker or the database is away.
    backoff_initial: float = 0.1
    backoff_max: float = 5.0

    def tiers_ms(self) -> list[int]:
        return [max(1, round(seconds * 1000)) for seconds in self.retry_tiers]


@dataclass
class ConsumerStats:
    """Counts of what the consumer did; they keep updating while it runs."""

    connected: bool = False
    sessions: int = 0
    handled: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0


class ConsumerSetupError(ValueError):
    """The consumer was set up wrongly; reported before it touches the broker."""


@dataclass
class _Registration:
    event_type: str
    handle: Handler
    keys: Keys | None
    decode: Decode | None


@dataclass
class _Incoming:
    """One delivery and what is known of it before its handler runs."""

    message: DeliveredMessage
    previous_attempts: int
    event: Event | None = None
    registration: _Registration | None = None
    lock_ids: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    #: Set when a check before the handler failed.
    failure: DeadLetter | None = None

    @property
    def delivery_tag(self) -> int:
        return int(self.message.delivery.delivery_tag)


class Consumer:
    """A service's consumer of Conveyor events.

    Example::

        consumer = Consumer(service="ledger-py", amqp_url=..., database_url=...,
                            schemas_dir="events-schema/schemas")

        @consumer.handler("order.confirmed")
        async def on_confirmed(event: Event, tx: psycopg.AsyncConnection) -> None:
            await tx.execute("INSERT INTO ledger ...", (...))

        await consumer.run(stop_event)

    A handler runs inside the transaction that records the event in ``conveyor.inbox``; it
    must change nothing outside ``tx`` (a batch may be rolled back and run again) and must not
    commit it. Raise :class:`~conveyor_consumer.Transient` or
    :class:`~conveyor_consumer.Permanent`; any other exception counts as transient, except
    the database errors that say the data is wrong (permanent) or a lock race (conflict).
    """

    def __init__(
        self,
        service: str,
        amqp_url: str,
        database_url: str,
        schemas_dir: str | Path,
        name_prefix: str = "",
        *,
        options: ConsumerOptions | None = None,
        publishers: Mapping[str, Sequence[str]] | None = None,
        connection_name: str | None = None,
    ):
        """
        Args:
            service: the service's name, without prefix; names its queues and inbox rows.
            amqp_url: one broker URL, or several of one cluster separated by commas.
            database_url: the service's own database (libpq URL or key=value string).
            schemas_dir: ``events-schema/schemas``: ``<type>/v<N>.json`` per type and version.
            name_prefix: ``CONVEYOR_NAME_PREFIX`` of the system, empty for the default names.
            options: batching, prefetch, retry tiers and time limits.
            publishers: for event types of the team's own (not in the catalog), which
                services may publish them, for the source check.
            connection_name: shown in the broker's management UI; the service's name if unset.
        """
        if not service or any(c in service for c in " ./#*"):
            raise ConsumerSetupError(f"service name {service!r} cannot name queues")
        self.service = service
        self.names = Names(name_prefix)
        self.options = options or ConsumerOptions()
        self.contract = Contract(schemas_dir)
        self.stats = ConsumerStats()
        self._amqp_urls = [url.strip() for url in amqp_url.split(",") if url.strip()]
        if not self._amqp_urls:
            raise ConsumerSetupError("amqp_url names no broker")
        self._next_url = 0
        self._database_url = database_url
        self._connection_name = connection_name or service
        self._handlers: dict[str, _Registration] = {}
        self._publishers = publishers
        self.user = self.broker_user(self._amqp_urls[0])
        self._sources = SourceRule(self.names, service, self.user, publishers)
        self._tiers_ms = self.options.tiers_ms()
        self._queue = self.names.service_queue(service)

    # --- set-up ---------------------------------------------------------------------------

    @staticmethod
    def broker_user(amqp_url: str) -> str:
        """The user the URL authenticates as (``guest`` when it names none), which the broker
        checks as ``user_id`` on every copy this consumer publishes."""
        username = urlsplit(amqp_url).username
        return unquote(username) if username else "guest"

    def handler(
        self, event_type: str, *, keys: Keys | None = None, decode: Decode | None = None
    ) -> Callable[[Handler], Handler]:
        """Registers the decorated coroutine for ``event_type``; the service's queue binds it.

        Args:
            keys: the keys the event is serialized on (default: its ``subject``); two events
                of this service sharing a key are never handled at the same time.
            decode: turns ``data`` into the handler's type (``event.model``); an exception
                dead-letters the event as ``schema``, as a Rust handler's type would.
        """

        def register(handle: Handler) -> Handler:
            self.add_handler(event_type, handle, keys=keys, decode=decode)
            return handle

        return register

    def add_handler(
        self, event_type: str, handle: Handler, *, keys: Keys | None = None, decode: Decode | None = None
    ) -> None:
        if event_type in self._handlers:
            raise ConsumerSetupError(
                f"service {self.service} registers two handlers for {event_type}: keep one"
            )
        if not event_type or any(c in event_type for c in " *#"):
            raise ConsumerSetupError(f"event type {event_type!r} cannot be a binding key")
        if not self.contract.knows(event_type):
            log.warning(
                "No schema for %s in %s: every such event will be dead-lettered as schema.",
                event_type,
                self.contract.schemas_dir,
            )
        self._handlers[event_type] = _Registration(event_type, handle, keys, decode)

    def topology(self) -> ServiceTopology:
        """The exchanges, queues and bindings this consumer declares on connecting."""
        return ServiceTopology.for_service(self.names, self.service, list(self._handlers), self._tiers_ms)

    def _check_setup(self) -> None:
        if not self._handlers:
            raise ConsumerSetupError(
                f"service {self.service} has no handlers: register at least one before running"
            )
        options = self.options
        for name in ("workers", "prefetch", "batch_size", "max_body_bytes"):
            if getattr(options, name) < 1:
                raise ConsumerSetupError(f"consumer option {name} must be at least 1")
        if not options.retry_tiers:
            raise ConsumerSetupError("consumer option retry_tiers needs at least one delay")
        if options.prefetch > 65535:
            raise ConsumerSetupError("consumer option prefetch is at most 65535")

    # --- running --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consumes until ``stop`` is set: then stops taking deliveries, finishes the batch in
        hand, gives pending copies up to ``close_timeout`` to be confirmed, and closes. A lost
        broker or database is waited for with backoff."""
        self._check_setup()
        if self._sources.enforced:
            log.info("%s: events are taken only from the broker users of their publishers.", self.service)
        else:
            log.info(
                "%s: connected as %s, a shared account: the source check is skipped (its own "
                "user would be %s).",
                self.service,
                self.user,
                self.names.broker_user(self.service),
            )
        backoff = Backoff(self.options.backoff_initial, self.options.backoff_max)
        while not stop.is_set():
            try:
                connection = await psycopg.AsyncConnection.connect(self._database_url, autocommit=True)
                try:
                    await inbox.install(connection)
                finally:
                    await connection.close()
                break
            except (OSError, psycopg.Error) as error:
                log.warning("Cannot install conveyor.inbox (%s); retrying.", error)
                if await sleep_or_stop(backoff.delay(), stop):
                    return
        backoff.reset()
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # every failure of a session: open a new one
                log.warning("%s lost its broker session (%s); reconnecting.", self.service, describe(error))
                if await sleep_or_stop(backoff.delay(), stop):
                    return

    async def _connect(self, name: str) -> aio_pika.abc.AbstractConnection:
        """A connection to the next broker that takes one; our own reconnection, not
        aio-pika's robust one (which would hide the loss of unacknowledged deliveries)."""
        reasons = []
        count = len(self._amqp_urls)
        first, self._next_url = self._next_url, self._next_url + 1
        for offset in range(count):
            url = self._amqp_urls[(first + offset) % count]
            try:
                return await aio_pika.connect(url, client_properties={"connection_name": name}, timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # refused, unreachable, bad credentials: try the next
                reasons.append(f"{urlsplit(url).hostname}: {error!r}")
        raise SessionError(f"could not connect to RabbitMQ: {'; '.join(reasons)}")

    async def _session(self, stop: asyncio.Event) -> None:
        connections: list[aio_pika.abc.AbstractConnection] = []
        lost = asyncio.Event()
        reasons: list[str] = []

        def on_lost(reason: str) -> Callable[..., None]:
            def callback(*_: Any, **__: Any) -> None:
                if stop.is_set():
                    return  # closing on purpose
                if not lost.is_set():
                    reasons.append(reason)
                lost.set()

            return callback

        async def open_session() -> list[tuple[Any, Any, str, asyncio.Queue]]:
            consuming = await self._connect(self._connection_name)
            connections.append(consuming)
            await self.topology().declare(consuming)
            publishing = await self._connect(f"{self._connection_name} (retries and dead letters)")
            connections.append(publishing)
            consuming.close_callbacks.add(on_lost("the consuming connection closed"))
            publishing.close_callbacks.add(on_lost("the publishing connection closed"))
            workers = []
            for index in range(self.options.workers):
                channel = await consuming.channel(publisher_confirms=False)
                await channel.set_qos(prefetch_count=self.options.prefetch)
                copies = await publishing.channel(publisher_confirms=True, on_return_raises=True)
                channel.close_callbacks.add(on_lost("a consuming channel closed"))
                copies.close_callbacks.add(on_lost("a publishing channel closed"))
                raw = await channel.get_underlay_channel()
                raw.on_consumer_cancel_callbacks.add(on_lost(f"the broker cancelled the consumer of {self._queue}"))
                deliveries: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
                tag = f"{self.service}-{index}-{uuid.uuid4().hex}"
                await raw.basic_consume(self._queue, deliveries.put_nowait, consumer_tag=tag)
                workers.append((channel, copies, tag, deliveries))
            return workers

        try:
            opening = asyncio.ensure_future(asyncio.wait_for(open_session(), self.options.setup_timeout))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not opening.done():
                opening.cancel()
                await asyncio.gather(opening, return_exceptions=True)
                return
            channels = opening.result()
            self.stats.sessions += 1
            self.stats.connected = True
            log.info("%s connected with %d workers.", self.service, len(channels))
            tasks = [
                asyncio.ensure_future(_Worker(self, index, *parts).run(stop))
                for index, parts in enumerate(channels)
            ]
            watch_lost = asyncio.ensure_future(lost.wait())
            pending = set(tasks)
            failure: BaseException | None = None
            try:
                while pending:
                    done, pending = await asyncio.wait(pending | {watch_lost}, return_when=asyncio.FIRST_COMPLETED)
                    pending.discard(watch_lost)
                    for task in done:
                        if task is not watch_lost and task.exception() is not None:
                            failure = task.exception()
                    if failure is not None or (lost.is_set() and pending):
                        break
            finally:
                watch_lost.cancel()
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            if failure is not None:
                raise SessionError(describe(failure)) from failure
            if lost.is_set() and not stop.is_set():
                raise SessionError(reasons[0] if reasons else "the broker session ended")
        finally:
            self.stats.connected = False
            for connection in connections:
                try:
                    await asyncio.wait_for(connection.close(), self.options.close_timeout)
                except Exception:  # already gone, or blocked by an alarm: do not wait on it
                    pass

    # --- before the handler ---------------------------------------------------------------

    def _decode(self, message: DeliveredMessage) -> _Incoming:
        """Every check before the handler, in the protocol's order: size, envelope, handler,
        source, contract, then the handler's own decoding and keys."""
        properties = message.header.properties
        headers = properties.headers or {}
        exchange = message.delivery.exchange or ""
        incoming = _Incoming(message, previous_attempts(exchange, headers))

        def refuse(kind: DeadLetterKind, error: str) -> _Incoming:
            incoming.failure = dead_letter(kind, error, incoming.previous_attempts)
            log.warning(
                "%s: delivery %s (routing key %s) cannot be handled: %s: %s",
                self.service,
                properties.message_id,
                message.delivery.routing_key,
                kind.value,
                incoming.failure.error,
            )
            return incoming

        body = message.body or b""
        limit = self.options.max_body_bytes
        if len(body) > limit:
            return refuse(
                DeadLetterKind.MALFORMED,
                f"the body of {len(body)} bytes is over this consumer's limit of {limit} bytes "
                "(max_body_bytes); events this large belong in storage, with a reference in the event",
            )
        try:
            envelope = parse_envelope(body)
        except MalformedError as error:
            return refuse(DeadLetterKind.MALFORMED, str(error))
        registration = self._handlers.get(envelope.type)
        if registration is None:
            return refuse(
                DeadLetterKind.UNKNOWN_TYPE,
                f"no handler for event type {json.dumps(envelope.type)} in service {self.service}",
            )
        forbidden = self._sources.check(envelope.type, properties.user_id, headers)
        if forbidden is not None:
            return refuse(DeadLetterKind.FORBIDDEN_SOURCE, forbidden)
        try:
            version = self.contract.check(envelope)
        except ContractViolation as violation:
            return refuse(DeadLetterKind.SCHEMA, str(violation))
        event = _event(envelope, version, incoming.previous_attempts, headers)
        try:
            if registration.decode is not None:
                event = _with_model(event, registration.decode(event.data))
            keys = list(registration.keys(event)) if registration.keys else (
                [event.subject] if event.subject is not None else []
            )
            if not all(isinstance(key, str) for key in keys):
                raise TypeError("keys must be strings")
            ids = lock_ids(self.service, keys)
        except Exception as error:
            return refuse(DeadLetterKind.SCHEMA, f"data does not match {event.type}: {describe(error)}")
        incoming.event, incoming.registration, incoming.keys, incoming.lock_ids = event, registration, keys, ids
        return incoming

    # --- the transaction ------------------------------------------------------------------

    async def _process(self, connection: psycopg.AsyncConnection, batch: list[_Incoming]) -> list[Outcome]:
        """Handles ``batch`` in one transaction: the keys' locks (sorted), then per delivery a
        savepoint with its inbox row and its handler, so one failure undoes only its own
        work. Raises when the transaction itself fails: nothing was committed."""
        if all(incoming.failure is not None for incoming in batch):
            return [incoming.failure for incoming in batch]  # type: ignore[misc]
        all_ids = sorted({id_ for incoming in batch for id_ in incoming.lock_ids})
        outcomes: list[Outcome] = []
        async with connection.transaction():
            lock_ms = round(self.options.lock_timeout * 1000)
            idle_ms = round(self.options.idle_transaction_timeout * 1000)
            await connection.execute(inbox.transaction_limits(lock_ms, idle_ms))
            waited = True
            if all_ids:
                try:
                    async with connection.transaction():
                        await connection.execute(_LOCK_ALL, (all_ids,))
                except psycopg.Error as error:
                    if sqlstate(error) not in LOCK_CONFLICTS:
                        raise
                    # A key stayed busy past lock_timeout: take each delivery's keys without
                    # waiting, so one stuck key cannot hold up the others.
                    waited = False
            for incoming in batch:
                if incoming.failure is not None:
                    outcomes.append(incoming.failure)
                else:
                    outcomes.append(await self._one(connection, incoming, try_locks=not waited))
        return outcomes

    async def _one(self, connection: psycopg.AsyncConnection, incoming: _Incoming, try_locks: bool) -> Outcome:
        assert incoming.event is not None and incoming.registration is not None
        event = incoming.event
        busy = duplicate = False
        failure: Exception | None = None
        async with connection.transaction():
            if try_locks and incoming.lock_ids:
                cursor = await connection.execute(_TRY_LOCK_ALL, (incoming.lock_ids,))
                row = await cursor.fetchone()
                if not (row and row[0]):
                    busy = True
                    raise psycopg.Rollback()
            if not await inbox.claim(connection, self.service, event.id, event.attempt):
                duplicate = True
            else:
                try:
                    await incoming.registration.handle(event, connection)
                except Exception as error:
                    failure = error
                    raise psycopg.Rollback() from None
        tiers = self._tiers_ms
        if busy:
            return conflict(
                tiers,
                incoming.previous_attempts,
                f"another transaction held the lock of key {incoming.keys!r} for longer than "
                f"{self.options.lock_timeout:g}s",
            )
        if duplicate:
            return Duplicate()
        if failure is None:
            return Handled()
        error = describe(failure)
        kind = classify_handler_error(failure)
        if kind == "permanent":
            outcome: Outcome = dead_letter(DeadLetterKind.PERMANENT, error, incoming.previous_attempts + 1)
        elif kind == "conflict":
            outcome = conflict(tiers, incoming.previous_attempts, error)
        else:
            outcome = transient(tiers, incoming.previous_attempts + 1, error)
        log.warning("%s: handler of %s %s failed: %s", self.service, event.type, event.id, outcome)
        return outcome


def _event(envelope: Envelope, version: int, previous: int, headers: Mapping[str, Any]) -> Event:
    return Event(
        id=envelope.id,
        type=envelope.type,
        source=envelope.source,
        time=envelope.time,
        datacontenttype=envelope.datacontenttype,
        version=version,
        correlation_id=envelope.correlation_id,
        data=envelope.data,
        dataschema=envelope.dataschema,
        subject=envelope.subject,
        causation_id=envelope.causation_id,
        previous_attempts=previous,
        headers=dict(headers),
    )


def _with_model(event: Event, model: Any) -> Event:
    return replace(event, model=model)


class _Worker:
    """One channel's batches: take, handle, settle."""

    def __init__(
        self,
        consumer: Consumer,
        index: int,
        channel: aio_pika.abc.AbstractChannel,
        copies: aio_pika.abc.AbstractChannel,
        tag: str,
        deliveries: "asyncio.Queue[DeliveredMessage]",
    ):
        self.consumer = consumer
        self.index = index
        self.channel = channel
        self.copies = copies
        self.tag = tag
        self.deliveries = deliveries
        self.database: psycopg.AsyncConnection | None = None
        self.settler: Settler | None = None

    async def run(self, stop: asyncio.Event) -> None:
        options = self.consumer.options
        raw = await self.channel.get_underlay_channel()
        self.settler = Settler(self.consumer, raw, await self.copies.get_underlay_channel())
        graceful = False
        try:
            while True:
                first = await self._next(stop)
                if first is None:
                    break
                batch = [first]
                while len(batch) < options.batch_size:
                    try:
                        batch.append(self.deliveries.get_nowait())
                    except asyncio.QueueEmpty:
                        break
                incoming = [self.consumer._decode(message) for message in batch]
                outcomes = await self._outcomes(incoming, stop)
                if outcomes is None:
                    break  # stopped while the database was away: nothing acknowledged
                self._count(outcomes)
                await self.settler.settle(incoming, outcomes)
            graceful = True
        finally:
            await self._close(raw, graceful)

    async def _next(self, stop: asyncio.Event) -> DeliveredMessage | None:
        """The next delivery; ``None`` when stopping. Raises a copy's publishing failure."""
        assert self.settler is not None
        if stop.is_set():
            return None
        if not self.deliveries.empty():
            return self.deliveries.get_nowait()
        if self.settler.failure is not None:
            raise SessionError(describe(self.settler.failure)) from self.settler.failure
        getting = asyncio.ensure_future(self.deliveries.get())
        stopping = asyncio.ensure_future(stop.wait())
        failing = asyncio.ensure_future(self.settler.failed.wait())
        try:
            await asyncio.wait({getting, stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (getting, stopping, failing):
                if not waiter.done():
                    waiter.cancel()
        if self.settler.failure is not None:
            raise SessionError(describe(self.settler.failure)) from self.settler.failure
        if getting.done() and not getting.cancelled():
            if stop.is_set():
                # Taken as stopping came: it goes back to the queue when the channel closes.
                return None
            return getting.result()
        return None

    async def _database(self) -> psycopg.AsyncConnection:
        if self.database is None or self.database.closed or self.database.broken:
            if self.database is not None:
                await self.database.close()
            self.database = await psycopg.AsyncConnection.connect(self.consumer._database_url, autocommit=True)
        return self.database

    async def _outcomes(self, batch: list[_Incoming], stop: asyncio.Event) -> list[Outcome] | None:
        """The batch's outcomes, holding it while the database is away; ``None`` when
        ``stop`` came meanwhile. A transaction refused for a reason of its own (a constraint
        checked at commit, a handler that left the transaction aborted) is tried a few
        times, then its deliveries one at a time, and a single one that still fails is
        dead-lettered as ``permanent``."""
        consumer = self.consumer
        backoff = Backoff(consumer.options.backoff_initial, consumer.options.backoff_max)
        refused = 0
        while True:
            try:
                return await consumer._process(await self._database(), batch)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if database_unavailable(error):
                    log.warning("%s: database unavailable (%s); holding the batch.", consumer.service, error)
                else:
                    refused += 1
                    log.warning(
                        "%s: the database refused the batch's transaction (attempt %d): %s",
                        consumer.service,
                        refused,
                        describe(error),
                    )
                    if refused >= REFUSALS_BEFORE_DEAD_LETTER:
                        if len(batch) == 1:
                            return [
                                dead_letter(
                                    DeadLetterKind.PERMANENT,
                                    f"the database refused this event's transaction {refused} times: {describe(error)}",
                                    batch[0].previous_attempts,
                                )
                            ]
                        outcomes: list[Outcome] = []
                        for single in batch:
                            outcome = await self._outcomes([single], stop)
                            if outcome is None:
                                return None
                            outcomes.extend(outcome)
                        return outcomes
            if await sleep_or_stop(backoff.delay(), stop):
                return None

    def _count(self, outcomes: list[Outcome]) -> None:
        stats = self.consumer.stats
        for outcome in outcomes:
            if isinstance(outcome, Handled):
                stats.handled += 1
            elif isinstance(outcome, Duplicate):
                stats.duplicates += 1
            elif isinstance(outcome, Retry):
                stats.retried += 1
            else:
                stats.dead_lettered += 1

    async def _close(self, raw: Any, graceful: bool) -> None:
        """Stops taking deliveries, lets pending copies be confirmed (when stopping
        gracefully), closes the channels. Deliveries not acknowledged return to the queue."""
        timeout = self.consumer.options.close_timeout
        if graceful:
            try:
                await asyncio.wait_for(raw.basic_cancel(self.tag), timeout)
            except Exception:
                pass
        if self.settler is not None:
            await self.settler.finish(timeout if graceful else 0)
        # After a failure the session closes the connections; a dead one would not answer.
        for channel in (self.channel, self.copies) if graceful else ():
            if not channel.is_closed:
                try:
                    await asyncio.wait_for(channel.close(), timeout)
                except Exception:
                    pass
        if self.database is not None:
            # Closing ends any transaction in flight; Postgres rolls it back.
            await self.database.close()
