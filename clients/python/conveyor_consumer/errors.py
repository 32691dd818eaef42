"""How a handler fails, and what a database error says about trying again.

A handler raises :class:`Permanent` when retrying cannot help (dead-lettered at once), and
:class:`Transient` when it may pass later (retried through the tiers). Any other exception
counts as transient, except the database errors the protocol names as permanent (unique,
foreign-key, not-null or check violations, SQLSTATE class 22, 54000). A lost race for a lock
(55P03, 40P01, 40001) anywhere in the exception's chain is a conflict: retried after the first
tier without counting as a failed attempt.
"""

from __future__ import annotations

from typing import Iterator

import psycopg

#: SQLSTATEs of a lost race for a lock, which retrying resolves.
LOCK_CONFLICTS = frozenset({"55P03", "40P01", "40001"})
#: unique, foreign-key, not-null and check violations.
CONSTRAINT_VIOLATIONS = frozenset({"23505", "23503", "23502", "23514"})


class HandlerError(Exception):
    """Base of the two failures a handler may declare."""


class Transient(HandlerError):
    """May succeed later: retried through the delay tiers, then dead-lettered as
    ``retries-exhausted``."""


class Permanent(HandlerError):
    """Will fail again however often it is retried: dead-lettered at once as ``permanent``."""


def sqlstate(error: BaseException) -> str | None:
    return getattr(error, "sqlstate", None) if isinstance(error, psycopg.Error) else None


def is_refused_data_code(code: str) -> bool:
    """Class 22 (data exception: NUL in text, value too long, out of range…) and 54000
    (program limit exceeded): the data is at fault, every time."""
    return code.startswith("22") or code == "54000"


def chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and its causes (``raise … from``) and contexts, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def caused_by_lock_conflict(error: BaseException) -> bool:
    return any(sqlstate(cause) in LOCK_CONFLICTS for cause in chain(error))


def describe(error: BaseException) -> str:
    """The error's text with its causes, ``a: b: c``, as anyhow's ``{:#}`` prints a chain.
    An exception other than ours is named by its class, which tells operators more."""
    parts: list[str] = []
    for cause in chain(error):
        text = str(cause).strip()
        if not isinstance(cause, HandlerError):
            text = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
        if text and text not in parts:
            parts.append(text)
    return ": ".join(parts) or type(error).__name__


def classify_handler_error(error: BaseException) -> str:
    """``"permanent"``, ``"transient"`` or ``"conflict"``."""
    if isinstance(error, Permanent):
        return "permanent"
    if isinstance(error, Transient):
        return "conflict" if caused_by_lock_conflict(error) else "transient"
    code = sqlstate(error)
    if code is not None:
        if code in CONSTRAINT_VIOLATIONS or is_refused_data_code(code):
            return "permanent"
        if code in LOCK_CONFLICTS:
            return "conflict"
        return "transient"
    return "conflict" if caused_by_lock_conflict(error) else "transient"


def database_unavailable(error: BaseException) -> bool:
    """Whether a failure of the handling transaction itself means "the database is away or
    busy for now: hold the batch and try again" (connection failures, SQLSTATE classes 08 and
    53, 57P*, 57014, the lock conflicts, a database error without a code), rather than "this
    batch is refused and will be again" (a constraint checked at commit, a permission…)."""
    if isinstance(error, (OSError, psycopg.InterfaceError)):
        return True
    if not isinstance(error, psycopg.Error):
        return False
    code = sqlstate(error)
    if code is None:
        return True
    return (
        code.startswith("08")
        or code.startswith("53")
        or code.startswith("57P")
        or code in {"57014"} | LOCK_CONFLICTS
    )
