"""Doubling delays while the broker or the database is away, or a copy is refused."""

from __future__ import annotations

import asyncio


class Backoff:
    """From ``initial``, doubling on each delay up to ``maximum``; ``reset`` after a success."""

    def __init__(self, initial: float, maximum: float):
        self.initial, self.maximum, self.next = initial, maximum, initial

    def delay(self) -> float:
        delay, self.next = self.next, min(self.next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self.next = self.initial


async def sleep_or_stop(delay: float, stop: asyncio.Event) -> bool:
    """Sleeps ``delay``; ``True`` when ``stop`` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        return False
    return True
