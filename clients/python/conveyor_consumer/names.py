"""Exchange, queue and broker-user names, with the optional system prefix.

Every name a consumer uses comes from here, so that the one exception to the prefix (the
dead-letter routing key is the bare service name) lives in one place, as it does in the Rust
runtime's ``topology::Names``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PREFIX_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")


def tier_label(delay_ms: int) -> str:
    """``10s`` for whole seconds, ``1500ms`` otherwise: how a tier's delay appears in its
    queue's name. Two implementations that disagree here would route retries to a queue
    nobody declared."""
    if delay_ms % 1000 == 0:
        return f"{delay_ms // 1000}s"
    return f"{delay_ms}ms"


@dataclass(frozen=True)
class Names:
    """The names of one Conveyor system: DESIGN.md's, or all under ``<prefix>.``."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if not self.is_valid_prefix(self.prefix):
            raise ValueError(
                f"name prefix {self.prefix!r} is not valid: a name prefix is 1 to 64 ASCII "
                "letters, digits, '-' or '_', starting with a letter or digit, and not amq; "
                "empty gives the default names"
            )

    @staticmethod
    def is_valid_prefix(prefix: str) -> bool:
        """The Rust runtime refuses the same prefixes (``Names::is_valid_prefix``)."""
        if prefix == "":
            return True
        return bool(_PREFIX_RULE.match(prefix)) and prefix.lower() != "amq"

    def qualify(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    @property
    def events_exchange(self) -> str:
        return self.qualify("conveyor.events")

    @property
    def unrouted(self) -> str:
        return self.qualify("conveyor.unrouted")

    @property
    def retry_exchange(self) -> str:
        return self.qualify("conveyor.retry")

    @property
    def dead_letter_exchange(self) -> str:
        return self.qualify("conveyor.dlx")

    def service_queue(self, service: str) -> str:
        return self.qualify(f"{service}.events")

    def retry_queue(self, service: str, delay_ms: int) -> str:
        return self.qualify(f"{service}.retry.{tier_label(delay_ms)}")

    def dead_letter_queue(self, service: str) -> str:
        return self.qualify(f"{service}.dlq")

    def broker_user(self, service: str) -> str:
        """``conveyor-<service>``: users are per broker, not per vhost, so the prefix applies."""
        return self.qualify(f"conveyor-{service}")

    @staticmethod
    def dead_letter_routing_key(service: str) -> str:
        """The exception to the prefix: ``blue.orders.events`` dead-letters with key ``orders``."""
        return service
