"""Records every confirmed order in a ledger, as a Python service beside Conveyor would.

Usage (from this folder; the broker and the database default to the local ones):
    python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt
    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ledger \
    .venv/bin/python consume_orders.py

It consumes order.confirmed from the queue ledger-py.events (declared, with its retry queues
and ledger-py.dlq, on start) and stops cleanly on Ctrl-C or SIGTERM.
"""

import asyncio
import logging
import os
import signal
from pathlib import Path

import psycopg

from conveyor_consumer import Consumer, Event, Permanent

SCHEMAS = Path(__file__).resolve().parents[2] / "events-schema" / "schemas"

LEDGER = """
CREATE TABLE IF NOT EXISTS ledger_entries (
    order_id    UUID PRIMARY KEY,
    user_id     UUID NOT NULL,
    total_cents BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    event_id    UUID NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


def build(amqp_url: str, database_url: str) -> Consumer:
    consumer = Consumer(
        service="ledger-py",
        amqp_url=amqp_url,
        database_url=database_url,
        schemas_dir=os.environ.get("CONVEYOR_SCHEMAS_DIR", SCHEMAS),
        name_prefix=os.environ.get("CONVEYOR_NAME_PREFIX", ""),
    )

    @consumer.handler("order.confirmed")
    async def on_confirmed(event: Event, tx: psycopg.AsyncConnection) -> None:
        data = event.data
        if data["currency"] not in ("EUR", "USD", "GBP"):
            raise Permanent(f"the ledger keeps no accounts in {data['currency']}")
        # Runs in the inbox's transaction: committed once per event, whatever the redeliveries.
        await tx.execute(
            """INSERT INTO ledger_entries (order_id, user_id, total_cents, currency, event_id)
               VALUES (%s, %s, %s, %s, %s)""",
            (data["order_id"], data["user_id"], data["total_cents"], data["currency"], event.id),
        )
        logging.info("order %s: %s %s recorded", data["order_id"], data["total_cents"], data["currency"])

    return consumer


async def main() -> None:
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    database_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(LEDGER)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await build(amqp_url, database_url).run(stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
