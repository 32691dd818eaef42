"""The source check: who published a delivery, as the broker vouches for it.

The answer is the AMQP ``user_id`` (RabbitMQ refuses a message whose ``user_id`` is not the
publishing connection's user), never the envelope's ``source``, which anyone can write. The
check applies only when the consumer connects as its own broker user ``conveyor-<service>``;
under a shared account such as ``guest`` the broker cannot tell publishers apart.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .names import Names

GATEWAY = "gateway"

#: Each event type and the one service that owns it, from ``events-schema/src/publishers.rs``
#: (a test compares the two when the repository is at hand).
OWNERS: dict[str, str] = {
    "user.registered": "users",
    "user.updated": "users",
    "user.deactivated": "users",
    "product.created": "inventory",
    "product.updated": "inventory",
    "inventory.reserved": "inventory",
    "inventory.rejected": "inventory",
    "inventory.released": "inventory",
    "order.created": "orders",
    "order.confirmed": "orders",
    "order.cancelled": "orders",
    "order.deadline-passed": "orders",
    "payment.captured": "payments",
    "payment.declined": "payments",
    "payment.refunded": "payments",
    "shipment.scheduled": "shipping",
    "shipment.failed": "shipping",
    "shipment.cancelled": "shipping",
    "return.requested": "orders",
    "return.closed": "orders",
    "return.cancelled": "orders",
    "return.deadline-passed": "orders",
    "return.received": "shipping",
    "pickup.booked": "shipping",
    "pickup.failed": "shipping",
    "pickup.cancelled": "shipping",
    "inventory.restocked": "inventory",
    "payment.return-refunded": "payments",
}

#: The types the gateway's HTTP ingest may publish, beside their owners.
INGESTIBLE: frozenset[str] = frozenset({"product.created", "product.updated"})

PUBLISHER_HEADER = "x-conveyor-publisher"


def publishers_of(event_type: str, extra: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Services that may publish ``event_type``: its owner, the gateway where ingestible, and
    for a team's own types, what ``extra`` says (it replaces the catalog's answer)."""
    if extra and event_type in extra:
        return list(extra[event_type])
    publishers = [OWNERS[event_type]] if event_type in OWNERS else []
    if event_type in INGESTIBLE:
        publishers.append(GATEWAY)
    return publishers


def header_text(value: Any) -> str | None:
    """A header's text: a string, or a long string's bytes that are UTF-8; else ``None``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def relays(names: Names, service: str) -> tuple[str, str]:
    """Users whose copies of others' events are believed: this service's own (retry copies)
    and the operators' (replays)."""
    return names.broker_user(service), names.broker_user("operator")


def origin(user_id: str | None, headers: Mapping[str, Any] | None, relay_users: Sequence[str]) -> str | None:
    """The publisher a message came from: its ``user_id``; for a copy sent again by one of
    ``relay_users``, the publisher its ``x-conveyor-publisher`` names (the relay itself when it
    names none). ``None`` when the message has no ``user_id``."""
    if user_id is None:
        return None
    if user_id in relay_users:
        named = header_text((headers or {}).get(PUBLISHER_HEADER))
        return named if named is not None else user_id
    return user_id


class SourceRule:
    """Who may send this service what; decided by the user it connects as."""

    def __init__(
        self,
        names: Names,
        service: str,
        connected_as: str,
        extra_publishers: Mapping[str, Sequence[str]] | None = None,
    ):
        self.names = names
        self.service = service
        self.enforced = connected_as == names.broker_user(service)
        self.relays = relays(names, service)
        self.extra = extra_publishers

    def check(self, event_type: str, user_id: str | None, headers: Mapping[str, Any] | None) -> str | None:
        """``None`` when the publisher may publish ``event_type``, else why not."""
        if not self.enforced:
            return None
        allowed = [self.names.broker_user(p) for p in publishers_of(event_type, self.extra)]
        described = " or ".join(allowed) if allowed else "nobody (no publisher is declared for it)"
        publisher = origin(user_id, headers, self.relays)
        if publisher is None:
            return (
                f"{event_type} may be published only by {described}, and this one carries no "
                "user_id, so its publisher is unknown"
            )
        if publisher in allowed:
            return None
        return (
            f"{event_type} may be published only by {described}, and this one came from "
            f"broker user {publisher}"
        )
