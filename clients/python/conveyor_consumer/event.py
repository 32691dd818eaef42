"""What a handler receives: one event, checked against its contract."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping


@dataclass(frozen=True)
class Event:
    """One delivered event whose envelope, source and data passed every check.

    ``data`` is the payload as parsed JSON; ``model`` what the handler's ``decode`` made of it
    (``None`` without one). ``headers`` are the delivery's AMQP headers, for ``traceparent``
    and the like.
    """

    id: uuid.UUID
    type: str
    source: str
    time: datetime
    datacontenttype: str
    version: int
    correlation_id: uuid.UUID
    data: Any
    dataschema: str | None = None
    subject: str | None = None
    causation_id: uuid.UUID | None = None
    #: Failed attempts before this delivery (0 on the first; believed only from a retry queue).
    previous_attempts: int = 0
    headers: Mapping[str, Any] = field(default_factory=dict, repr=False)
    model: Any = field(default=None, repr=False)

    @property
    def attempt(self) -> int:
        """1 for the first delivery, more after retries: the inbox row's ``attempt``."""
        return self.previous_attempts + 1

    @property
    def traceparent(self) -> str | None:
        """The W3C trace context to continue, when the publisher traced the event."""
        value = self.headers.get("traceparent")
        return value if isinstance(value, str) else None

    @property
    def tracestate(self) -> str | None:
        value = self.headers.get("tracestate")
        return value if isinstance(value, str) else None
