"""Per-key serialization ids: a transaction-scoped Postgres advisory lock per (service, key).

Events of one service that share a key are never handled at the same time, by two workers or
two processes. The id must be the one the Rust runtime computes (``key_lock_id``), or a
Python replica sharing a database with Rust replicas of the same service would lock other
ids and both could run one key's events at once: 64-bit FNV-1a over the service's name, one
byte ``0xFF``, then the key's bytes (UTF-8), read as a signed ``bigint``.
"""

from __future__ import annotations

from typing import Iterable

_OFFSET = 0xCBF29CE484222325
_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF


def key_lock_id(service: str, key: str) -> int:
    """The advisory lock id of ``key`` in ``service``; ``("payments", "order-1")`` gives
    ``-6208908746464398349``."""
    value = _OFFSET
    for byte in service.encode("utf-8") + b"\xff" + key.encode("utf-8"):
        value = ((value ^ byte) * _PRIME) & _MASK
    return value - (1 << 64) if value >= (1 << 63) else value


def lock_ids(service: str, keys: Iterable[str]) -> list[int]:
    """Sorted and without repeats: taking locks in one global order keeps two batches from
    each waiting on a lock the other holds."""
    return sorted({key_lock_id(service, key) for key in keys})
