"""A Python consumer of Conveyor events that keeps the Rust runtime's guarantees.

It follows ``docs/src/consumer-protocol.md``: the same topology, the inbox in
``conveyor.inbox``, retries through the same tiers and dead letters with the same headers,
so the operators' tools treat it like any Rust service. See :class:`Consumer`.
"""

from .amqp_fields import Int64
from .consumer import Consumer, ConsumerOptions, ConsumerSetupError, ConsumerStats
from .contract import Contract, ContractViolation
from .envelope import Envelope, MalformedError, parse_envelope
from .errors import HandlerError, Permanent, Transient
from .event import Event
from .key_lock import key_lock_id
from .names import Names
from .outcome import DeadLetterKind
from .topology import ServiceTopology, TopologyError

__all__ = [
    "Consumer",
    "ConsumerOptions",
    "ConsumerSetupError",
    "ConsumerStats",
    "Contract",
    "ContractViolation",
    "DeadLetterKind",
    "Envelope",
    "Event",
    "HandlerError",
    "Int64",
    "MalformedError",
    "Names",
    "Permanent",
    "ServiceTopology",
    "TopologyError",
    "Transient",
    "key_lock_id",
    "parse_envelope",
]

__version__ = "0.1.0"
