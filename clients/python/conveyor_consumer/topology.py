"""Declaring the exchanges, the service's queues and their bindings, as the Rust runtime does
every time it connects.

Declarations carry exactly the protocol's arguments (text as long strings, numbers as signed
64-bit integers): one that differs from an existing queue's closes the channel with
PRECONDITION_FAILED. Such a queue is kept as it is, with a warning. A broker user of least
privilege (``conveyor topology users``) may not declare the shared exchanges: what it may not
declare is only checked to exist (ACCESS_REFUSED falls back to a passive declaration), and
bindings of a queue it may not declare are left to the operator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, ExchangeType

from .amqp_fields import Int64
from .names import Names

log = logging.getLogger("conveyor_consumer.topology")

#: Quorum queues redeliver a message at most this often before the broker dead-letters it.
DELIVERY_LIMIT = 50


class TopologyError(RuntimeError):
    """The broker refused a declaration, or something this user may not declare is missing."""


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str


@dataclass
class ServiceTopology:
    """What one consumer declares: the four exchanges and its service's queues."""

    exchanges: list[tuple[str, ExchangeType, dict[str, Any]]] = field(default_factory=list)
    queues: list[QueueSpec] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)

    @classmethod
    def for_service(
        cls, names: Names, service: str, event_types: Sequence[str], tiers_ms: Sequence[int]
    ) -> "ServiceTopology":
        topology = cls()
        topology.exchanges = [
            (names.events_exchange, ExchangeType.TOPIC, {"alternate-exchange": names.unrouted}),
            (names.unrouted, ExchangeType.FANOUT, {}),
            (names.retry_exchange, ExchangeType.DIRECT, {}),
            (names.dead_letter_exchange, ExchangeType.DIRECT, {}),
        ]
        queue = names.service_queue(service)
        dead_letter_key = names.dead_letter_routing_key(service)
        topology.queues.append(
            QueueSpec(
                queue,
                {
                    "x-queue-type": "quorum",
                    "x-delivery-limit": Int64(DELIVERY_LIMIT),
                    "x-dead-letter-exchange": names.dead_letter_exchange,
                    "x-dead-letter-routing-key": dead_letter_key,
                },
            )
        )
        for event_type in sorted(set(event_types)):
            topology.bindings.append(Binding(names.events_exchange, queue, event_type))
        for delay_ms in tiers_ms:
            retry_queue = names.retry_queue(service, delay_ms)
            topology.queues.append(
                QueueSpec(
                    retry_queue,
                    {
                        "x-queue-type": "quorum",
                        "x-message-ttl": Int64(delay_ms),
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": queue,
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    },
                )
            )
            topology.bindings.append(Binding(names.retry_exchange, retry_queue, retry_queue))
        dead_letter_queue = names.dead_letter_queue(service)
        topology.queues.append(QueueSpec(dead_letter_queue, {"x-queue-type": "quorum"}))
        topology.bindings.append(
            Binding(names.dead_letter_exchange, dead_letter_queue, dead_letter_key)
        )
        return topology

    async def declare(self, connection: AbstractConnection) -> None:
        """Declares everything on ``connection``; safe to repeat.

        Raises:
            TopologyError: naming what the broker refused.
        """
        channel = await connection.channel(publisher_confirms=False)
        try:
            for name, kind, arguments in self.exchanges:
                try:
                    await channel.declare_exchange(name, kind, durable=True, arguments=arguments)
                except aiormq.exceptions.ChannelAccessRefused:
                    channel = await _reopen(connection, channel)
                    await _exists(channel, f"exchange {name}", channel.get_exchange(name, ensure=True))
                except aiormq.exceptions.AMQPError as error:
                    raise TopologyError(f"the broker refused to declare exchange {name}: {error}") from error
            not_ours: set[str] = set()
            for queue in self.queues:
                try:
                    await channel.declare_queue(queue.name, durable=True, arguments=queue.arguments)
                except aiormq.exceptions.ChannelPreconditionFailed as error:
                    channel = await _reopen(connection, channel)
                    await _exists(channel, f"queue {queue.name}", channel.declare_queue(queue.name, passive=True))
                    log.warning(
                        "Queue %s exists with other arguments than this consumer declares (%s); "
                        "it keeps its old ones.",
                        queue.name,
                        error,
                    )
                except aiormq.exceptions.ChannelAccessRefused:
                    channel = await _reopen(connection, channel)
                    await _exists(channel, f"queue {queue.name}", channel.declare_queue(queue.name, passive=True))
                    not_ours.add(queue.name)
                except aiormq.exceptions.AMQPError as error:
                    raise TopologyError(f"the broker refused to declare queue {queue.name}: {error}") from error
            raw = await channel.get_underlay_channel()
            for binding in self.bindings:
                if binding.queue in not_ours:
                    continue
                try:
                    await raw.queue_bind(binding.queue, binding.exchange, routing_key=binding.routing_key)
                except aiormq.exceptions.AMQPError as error:
                    raise TopologyError(
                        f"the broker refused binding {binding.exchange} -> {binding.queue} "
                        f"({binding.routing_key}): {error}"
                    ) from error
        finally:
            if not channel.is_closed:
                await channel.close()


async def _reopen(connection: AbstractConnection, channel: AbstractChannel) -> AbstractChannel:
    """A refusal closed the channel: open another for what follows."""
    if not channel.is_closed:
        await channel.close()
    return await connection.channel(publisher_confirms=False)


async def _exists(channel: AbstractChannel, what: str, check: Any) -> None:
    try:
        await check
    except aiormq.exceptions.AMQPError as error:
        raise TopologyError(
            f"{what}: this broker user may not declare it, and it does not exist (run "
            f"`conveyor topology apply` as the operator first): {error}"
        ) from error
