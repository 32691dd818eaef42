"""A naive consumer, deliberately wrong: the control subject of ``conveyor conformance run``.

It is what a newcomer writes in an afternoon with aio-pika and psycopg, and it breaks the
consumer protocol (docs/src/consumer-protocol.md) on purpose, so that the conformance suite is
seen to catch it (clients/python/tests/test_conformance.py expects its run to fail). What it
gets wrong:

- it consumes with automatic acknowledgement: each delivery counts as acknowledged when it is
  sent, before the work is committed, so a crash or a stop mid-handler loses the event;
- it keeps no inbox: a redelivered or duplicated event has its effect twice;
- it has no retry tiers: a failing handler is logged and the event dropped; it never counts
  attempts (every run is attempt 1);
- it publishes no dead letters: a permanent failure or a body that is not JSON is logged and
  dropped;
- it checks neither the envelope, the type, the contract nor the publisher: whatever parses
  as JSON with the fields it reads is handled as if it were fine.

The one thing it borrows from ``conveyor_consumer`` is the topology (``ServiceTopology``): its
queue must be declared with the arguments the runner and the reference use, or the broker
refuses the declaration. It reads the same environment as ``subject.py``. From
``clients/python``:

    conveyor conformance run --subject ".venv/bin/python conformance/naive_subject.py"
"""

import asyncio
import json
import logging
import os
import signal

import aio_pika
import psycopg

from conveyor_consumer import Names, ServiceTopology

log = logging.getLogger("naive_subject")


async def handle(db: psycopg.AsyncConnection, event: dict) -> None:
    told = event["data"].get("conformance", {})
    if told.get("permanent"):
        raise RuntimeError("conformance: told to fail for good")
    if told.get("transient_failures", 0) >= 1:  # every delivery is "attempt 1" here
        raise RuntimeError(f"conformance: told to fail {told['transient_failures']} times")
    if told.get("hold_ms", 0) > 0:
        await asyncio.sleep(told["hold_ms"] / 1000)
    await db.execute("INSERT INTO conformance_effects (event_id, attempt) VALUES (%s, %s)", (event["id"], 1))


async def main() -> None:
    names = Names(os.environ.get("CONVEYOR_NAME_PREFIX", ""))
    service = os.environ["CONVEYOR_CONFORMANCE_SERVICE"]
    tiers_ms = [int(ms) for ms in os.environ["CONVEYOR_CONFORMANCE_RETRY_TIERS_MS"].split(",")]
    db = await psycopg.AsyncConnection.connect(os.environ["DATABASE_URL"], autocommit=True)
    connection = await aio_pika.connect_robust(os.environ["AMQP_URL"])  # reconnects by itself
    await ServiceTopology.for_service(names, service, ["order.confirmed"], tiers_ms).declare(connection)
    channel = await connection.channel()
    queue = await channel.declare_queue(names.service_queue(service), passive=True)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            await handle(db, json.loads(message.body))
        except Exception:
            log.exception("could not handle message %s; skipping it", message.message_id)

    await queue.consume(on_message, no_ack=True)  # acknowledged as it arrives
    log.info("consuming %s", queue.name)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await connection.close()
    await db.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
