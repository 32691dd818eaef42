"""The reference consumer (``conveyor_consumer``) as a subject of ``conveyor conformance run``.

The runner makes a vhost, broker users and a database of their own for the run, starts this
script with ``sh -c`` and drives it through its cases, watching ``conformance_effects`` and the
dead-letter queue. From ``clients/python``:

    conveyor conformance run --subject ".venv/bin/python conformance/subject.py"

It reads what the runner sets: ``AMQP_URL`` (its own broker user on the run's vhost),
``DATABASE_URL`` (where the runner created ``conformance_effects``), ``CONVEYOR_NAME_PREFIX``,
``CONVEYOR_CONFORMANCE_SERVICE`` (the service to consume as) and
``CONVEYOR_CONFORMANCE_RETRY_TIERS_MS`` (``200,400,800``); and ``CONVEYOR_SCHEMAS_DIR`` if
set, else the repository's ``events-schema/schemas``. It consumes ``order.confirmed``, whose
``data`` may carry an object ``conformance`` telling the handler how to behave:
``permanent`` (fail for good), ``transient_failures`` (fail the first N attempts),
``hold_ms`` (work that long before the effect); instructions of the wrong type dead-letter the
event as ``schema``, as the Rust subject (``conveyor conformance subject``) does. It runs until
SIGTERM or SIGINT, then stops cleanly; it logs to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from conveyor_consumer import Consumer, ConsumerOptions, Event, Permanent, Transient

SCHEMAS = Path(__file__).resolve().parents[3] / "events-schema" / "schemas"

log = logging.getLogger("conformance.subject")


class SetupError(Exception):
    """The runner's environment is missing something or holds a value this subject cannot use."""


def required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SetupError(f"{name} is not set: the conformance runner sets it")
    return value


def retry_tiers(text: str) -> tuple[float, ...]:
    """``200,400,800`` (milliseconds) as the seconds ``ConsumerOptions.retry_tiers`` takes."""
    tiers: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise SetupError(
                f"CONVEYOR_CONFORMANCE_RETRY_TIERS_MS={text!r}: expected positive whole "
                "milliseconds separated by commas, e.g. 200,400,800"
            )
        tiers.append(int(part) / 1000)
    return tuple(tiers)


@dataclass(frozen=True)
class Instructions:
    """What the suite asks of one event (``data.conformance``); absent fields ask nothing."""

    permanent: bool = False
    transient_failures: int = 0
    hold_ms: int = 0


def _whole(given: dict, name: str, maximum: int) -> int:
    value = given.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"conformance.{name} must be a whole number from 0 to {maximum}")
    return value


def instructions(data: Any) -> Instructions:
    """The handler's ``decode``: ``data.conformance`` as :class:`Instructions`. Raising here
    dead-letters the event as ``schema``, as the Rust subject's typed decoding does."""
    if "conformance" not in data:
        return Instructions()
    given = data["conformance"]
    if not isinstance(given, dict):
        raise ValueError("conformance must be an object")
    permanent = given.get("permanent", False)
    if not isinstance(permanent, bool):
        raise ValueError("conformance.permanent must be true or false")
    return Instructions(
        permanent=permanent,
        transient_failures=_whole(given, "transient_failures", 2**32 - 1),
        hold_ms=_whole(given, "hold_ms", 2**64 - 1),
    )


def build() -> Consumer:
    """The consumer, as the environment describes it; raises :class:`SetupError`."""
    consumer = Consumer(
        service=required("CONVEYOR_CONFORMANCE_SERVICE"),
        amqp_url=required("AMQP_URL"),
        database_url=required("DATABASE_URL"),
        schemas_dir=os.environ.get("CONVEYOR_SCHEMAS_DIR") or SCHEMAS,
        name_prefix=os.environ.get("CONVEYOR_NAME_PREFIX", ""),
        options=ConsumerOptions(retry_tiers=retry_tiers(required("CONVEYOR_CONFORMANCE_RETRY_TIERS_MS"))),
        connection_name="conformance subject (conveyor_consumer)",
    )

    @consumer.handler("order.confirmed", decode=instructions)
    async def on_confirmed(event: Event, tx: psycopg.AsyncConnection) -> None:
        # Runs in the transaction that records event.id in conveyor.inbox.
        told: Instructions = event.model
        if told.permanent:
            raise Permanent("conformance: told to fail for good")
        if event.attempt <= told.transient_failures:
            raise Transient(f"conformance: told to fail {told.transient_failures} times")
        if told.hold_ms > 0:
            await asyncio.sleep(told.hold_ms / 1000)  # slow work, inside the transaction
        await tx.execute(
            "INSERT INTO conformance_effects (event_id, attempt) VALUES (%s, %s)",
            (event.id, event.attempt),
        )

    return consumer


async def main(consumer: Consumer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("consuming order.confirmed from %s", consumer.names.service_queue(consumer.service))
    await consumer.run(stop)
    log.info("stopped")


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        subject = build()
    except (SetupError, ValueError, FileNotFoundError) as error:  # a prefix, service or schemas dir refused
        log.error("cannot start: %s", error)
        sys.exit(2)
    asyncio.run(main(subject))
