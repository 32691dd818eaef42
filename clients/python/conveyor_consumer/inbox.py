"""The inbox: ``conveyor.inbox``, where a service records each event id it handled.

The table is the Rust runtime's, with the same values, so that ``conveyor flow trace`` and the
gentle replay (which watches it to know a replayed letter was handled) see this consumer's
work, and a Python replica and Rust replicas of one service share it.
"""

from __future__ import annotations

import uuid

import psycopg

#: The advisory lock the Rust runtime's store install takes ("conveyor"), so an install here
#: and one there never race on the same statements.
INSTALL_LOCK = 0x636F6E766579_6F72

CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS conveyor"
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS conveyor.inbox (
    consumer    TEXT NOT NULL,
    message_id  UUID NOT NULL,
    handled_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempt     INT,
    PRIMARY KEY (consumer, message_id)
)"""
#: What the Rust store adds beside the table: the column on tables made before it, and the
#: index its relay's retention purge uses.
ADD_ATTEMPT = "ALTER TABLE conveyor.inbox ADD COLUMN IF NOT EXISTS attempt INT"
CREATE_INDEX = "CREATE INDEX IF NOT EXISTS inbox_handled_at ON conveyor.inbox USING brin (handled_at)"

CLAIM = """
INSERT INTO conveyor.inbox (consumer, message_id, attempt) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING"""


async def _installed(connection: psycopg.AsyncConnection) -> bool:
    cursor = await connection.execute(
        """SELECT count(*) FROM information_schema.columns
           WHERE table_schema = 'conveyor' AND table_name = 'inbox' AND column_name = 'attempt'"""
    )
    row = await cursor.fetchone()
    return bool(row and row[0])


async def install(connection: psycopg.AsyncConnection) -> None:
    """Creates ``conveyor.inbox`` if it is missing.

    A database where it exists (a Rust service installed it, or an earlier run) is left
    untouched, and no lock is taken: an ``ALTER TABLE`` would wait for, and then block, the
    handlers of replicas already running.
    """
    if await _installed(connection):
        return
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (INSTALL_LOCK,))
        if await _installed(connection):
            return
        for statement in (CREATE_SCHEMA, CREATE_TABLE, ADD_ATTEMPT, CREATE_INDEX):
            await connection.execute(statement)


def transaction_limits(lock_timeout_ms: int, idle_timeout_ms: int) -> str:
    """The ``SET LOCAL`` statements that follow ``BEGIN``, in one round trip: a lock wait ends
    after ``lock_timeout`` (a busy key is then a conflict), and a handler idle in its
    transaction for longer has it ended, releasing its locks. 0 would mean "no limit" to
    Postgres, so at least 1 ms."""
    lock = max(1, min(int(lock_timeout_ms), 2**31 - 1))
    idle = max(1, min(int(idle_timeout_ms), 2**31 - 1))
    return f"SET LOCAL lock_timeout = {lock}; SET LOCAL idle_in_transaction_session_timeout = {idle}"


async def claim(connection: psycopg.AsyncConnection, service: str, event_id: uuid.UUID, attempt: int) -> bool:
    """Records ``event_id`` for ``service``; ``False`` when it was there already (a duplicate)."""
    cursor = await connection.execute(CLAIM, (service, event_id, min(attempt, 2**31 - 1)))
    return cursor.rowcount == 1
