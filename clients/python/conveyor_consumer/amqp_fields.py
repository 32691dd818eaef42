"""AMQP field-table values with the wire types the protocol asks for.

The protocol says numbers in queue arguments and in ``x-conveyor-attempts`` are signed 64-bit
integers (``l``), and text is a long string (``S``). pamqp, under aio-pika, encodes a Python
``int`` as the smallest type that holds it (``b`` for 50), and cannot encode ``bytes`` (a
header that was a long string of non-UTF-8 bytes comes back as ``bytes``, so copying it onto
a retry would fail). RabbitMQ compares integer arguments by value, so the small type would
work today; we still send what the protocol says, so a stricter peer or a future broker never
sees a difference between this consumer and the Rust one.

:class:`Int64` marks an integer to send as ``l``. :func:`install` teaches pamqp's field-table
encoder about it and about raw ``bytes`` long strings, and writes floats as doubles (``d``)
where pamqp would narrow them to 32 bits; every other value is encoded exactly as before.
"""

from __future__ import annotations

import struct
from typing import Any

import pamqp.encode


class Int64(int):
    """An integer sent as an AMQP signed 64-bit integer (``l``) in field tables."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Int64({int(self)})"


_installed = False


def install() -> None:
    """Wraps pamqp's field-table value encoder once per process (idempotent)."""
    global _installed
    if _installed:
        return
    original = pamqp.encode.encode_table_value

    def encode_table_value(value: Any) -> bytes:
        if type(value) is Int64:
            return b"l" + struct.pack(">q", int(value))
        if isinstance(value, bytes):
            return b"S" + struct.pack(">I", len(value)) + value
        if type(value) is float:
            # pamqp writes every float as 32 bits ('f'), which loses a double header's
            # precision and cannot hold 1e300: a copy must carry the value it received.
            return b"d" + struct.pack(">d", value)
        return original(value)

    pamqp.encode.encode_table_value = encode_table_value  # type: ignore[assignment]
    _installed = True


install()
