"""examples/python-consumer works as its README says: each confirmed order recorded once in
the ledger, and an order in a currency the ledger does not keep dead-lettered."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

import psycopg

from conftest import amqp_url, dead_letters, envelope, fetch_all, publisher, running, wait_until

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "python-consumer" / "consume_orders.py"


def load_example():
    spec = importlib.util.spec_from_file_location("consume_orders", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["consume_orders"] = module
    spec.loader.exec_module(module)
    return module


async def test_the_example_records_each_confirmed_order_once(vhost: str, database: str) -> None:
    example = load_example()
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as connection:
        await connection.execute(example.LEDGER)
    consumer = example.build(amqp_url(vhost), database)
    async with running(consumer), publisher(vhost, consumer.names) as pub:
        confirmed = envelope()
        yen = envelope(
            data={"order_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()), "total_cents": 900, "currency": "JPY"}
        )
        await pub.event(confirmed)
        await pub.event(confirmed)
        await pub.event(yen)
        await wait_until(lambda: consumer.stats.handled == 1 and consumer.stats.duplicates == 1)
        letters = await dead_letters(vhost, consumer.names, "ledger-py", 1)
    rows = await fetch_all(database, "SELECT order_id, total_cents, currency, event_id FROM ledger_entries")
    data = confirmed["data"]
    assert [(str(o), t, c, str(e)) for o, t, c, e in rows] == [
        (data["order_id"], data["total_cents"], data["currency"], confirmed["id"])
    ]
    assert letters[0].message_id == yen["id"]
    assert letters[0].headers["x-conveyor-error-kind"] == "permanent"
