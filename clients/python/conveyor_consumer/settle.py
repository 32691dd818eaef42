"""Acknowledging a handled batch, and sending the copies of its failed deliveries.

Successes are acknowledged at once on the consuming channel. A failed delivery is
acknowledged only once its retry copy or dead letter is confirmed; copies go out on a channel
of the publishing connection, in the background, so that a broker alarm that blocks
publishers holds up only the failed deliveries, never the acknowledgements of the rest. Never
a nack, a reject or a requeue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aiormq.exceptions

from .backoff import Backoff
from .outcome import DeadLetter, Outcome, Retry, copy_of

if TYPE_CHECKING:
    from .consumer import Consumer, _Incoming

log = logging.getLogger("conveyor_consumer")


class SessionError(RuntimeError):
    """The broker session must be opened again."""


class Settler:
    """Acknowledges a handled batch. Successes at once; a failed delivery only once its retry
    copy or dead letter is confirmed. Copies go out on the publishing connection in the
    background, so a blocked publisher holds up only the failed deliveries."""

    def __init__(self, consumer: Consumer, acks: Any, copies: Any):
        self.consumer = consumer
        self.acks = acks
        self.copies = copies
        self.pending: set[asyncio.Task[None]] = set()
        #: aiormq matches a returned message to its publish by ``message_id``: one copy in
        #: flight at a time on this channel keeps two copies of one event apart.
        self.lock = asyncio.Lock()
        #: Set when a copy could not be stored in time, or its channel failed: the session
        #: must be reset so that the broker delivers the originals again.
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None

    async def settle(self, batch: list[_Incoming], outcomes: list[Outcome]) -> None:
        consumer = self.consumer
        copies = []
        for incoming, outcome in zip(batch, outcomes):
            if isinstance(outcome, (Retry, DeadLetter)):
                message = incoming.message
                copies.append(
                    copy_of(
                        outcome,
                        names=consumer.names,
                        service=consumer.service,
                        connected_as=consumer.user,
                        exchange=message.delivery.exchange or "",
                        routing_key=message.delivery.routing_key or "",
                        delivery_tag=incoming.delivery_tag,
                        body=message.body or b"",
                        properties=message.header.properties,
                    )
                )
            else:
                await self.acks.basic_ack(incoming.delivery_tag)
        if copies:
            task = asyncio.ensure_future(self._send(copies))
            self.pending.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: "asyncio.Task[None]") -> None:
        self.pending.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and self.failure is None:
            self.failure = error
            self.failed.set()

    async def _send(self, copies: list[Any]) -> None:
        timeout = self.consumer.options.publish_timeout
        try:
            async with asyncio.timeout(timeout):
                for copy in copies:
                    await self._publish_until_stored(copy)
        except TimeoutError:
            raise SessionError(
                f"the broker did not confirm a retry or dead-letter copy within {timeout:g}s"
            ) from None
        for copy in copies:
            await self.acks.basic_ack(copy.delivery_tag)

    async def _publish_until_stored(self, copy: Any) -> None:
        """Publishes ``copy`` (mandatory, confirmed); a nacked or returned copy is sent again
        after 100 ms, doubling to 5 s."""
        options = self.consumer.options
        backoff = Backoff(options.backoff_initial, options.backoff_max)
        while True:
            try:
                async with self.lock:
                    await self.copies.basic_publish(
                        copy.body,
                        exchange=copy.exchange,
                        routing_key=copy.routing_key,
                        properties=copy.properties,
                        mandatory=True,
                    )
                return
            except (aiormq.exceptions.DeliveryError, aiormq.exceptions.PublishError) as error:
                log.warning(
                    "%s: the broker refused a copy for %s (%s) for now; sending it again.",
                    self.consumer.service,
                    copy.routing_key,
                    type(error).__name__,
                )
            await asyncio.sleep(backoff.delay())

    async def finish(self, grace: float) -> None:
        """Gives copies in flight up to ``grace`` to be confirmed; then gives up on them (their
        deliveries return to the queue, and the inbox absorbs a copy that arrives too)."""
        if self.pending:
            done, pending = await asyncio.wait(set(self.pending), timeout=grace) if grace > 0 else (set(), set(self.pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
