"""The transactions of an ingest.

One transaction per file costs each small file its BEGIN and COMMIT, and one for a
whole big database holds SQLite's single write lock for the whole ingest (an
upload or a login waited 24 s behind a 500-run database). So files share a
transaction, committed once it holds MAX_FILES files or has been open MAX_SECONDS,
and a database whose runs stand whole on their own commits between runs; then the
lock is left free a moment. A write from the site waits about that long at most.
Inside the transaction each file (or each part of a database) has its own
savepoint, so a bad file still rolls back alone.

The read models' changes of a transaction's files are applied once, just before it
commits, in one global order (read_models.py): each savepoint gathers its own,
handed to the transaction when it is released and dropped if it is rolled back.
A statement that fails because two writers met (PostgreSQL's deadlock_detected or
serialization_failure, SQLite's "database is locked" before the batch holds the
lock) is retried (`retryable`, `backoff`): the apply here, a file by the loader.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from django.db import DatabaseError, connection, transaction

from .inserters import IdAllocator
from .read_models import ReadModelDeltas
from .statistics import BetweenBatches

log = logging.getLogger(__name__)
T = TypeVar("T")

# Time bounds a batch (how long a write from the site may wait); the file count only
# bounds what a crash makes the next ingest read again.
MAX_FILES = 2000
MAX_SECONDS = 0.5
# SQLite does not queue writers: one waiting for the lock sleeps and retries, so a
# writer that begins again at once after its commit can keep it waiting
# indefinitely. After each batch falls due the lock is left free long enough for
# any writer that began waiting during the batch to retry once (PostgreSQL's
# writers do not wait on each other). SQLite's busy handler retries after 1, 2, 5,
# 10, 15, 20, 25, 25, 25, 50, 50 ms, then every 100 ms: a writer that has waited
# less than 0.128 s retries within 25 ms, less than 0.228 s within 50 ms.
SQLITE_PAUSE_SECONDS = 0.1
_RETRY_WITHIN = ((0.128, 0.025), (0.228, 0.05))
# Attempts at a write that failed because another writer held what it needed, and
# the first pause between them (doubled each time, jittered).
ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 0.05
# PostgreSQL's SQLSTATEs for "try the transaction again": deadlock_detected,
# serialization_failure.
RETRY_SQLSTATES = ("40P01", "40001")


class WriteBatch:
    """The transaction files are written in, opened at the first write (an
    unchanged rescan writes nothing and opens none), committed when due.

    Use as a context manager: what is left is committed at the end, or rolled
    back if an exception escapes (files already committed stay)."""

    def __init__(self):
        self._transaction: transaction.Atomic | None = None
        self._opened_at = 0.0
        self._parts = 0
        self.ids = Allocators()
        # The read models' changes of the savepoints released in the open transaction.
        self.pending = ReadModelDeltas()
        self.statistics = BetweenBatches()

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._transaction is None:
            return
        if exc_info[0] is None:
            self.commit()
        else:
            self._end(exc_info)

    def _end(self, exc_info) -> None:
        """Roll the open transaction back (an exception escaped)."""
        current, self._transaction = self._transaction, None
        self.pending.clear()
        current.__exit__(*exc_info)
        self.ids.transaction_ended()

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[ReadModelDeltas]:
        """One file's writes (or one part of a big file's): rolled back alone if
        the block raises, kept in the batch otherwise. The block gathers its read
        models' changes into the deltas it is given: the transaction's once the
        savepoint is released, dropped with it if it is rolled back."""
        if self._transaction is None:
            opening = transaction.atomic()
            opening.__enter__()  # SQLite: BEGIN IMMEDIATE, may find the database locked
            self._transaction = opening
            self._opened_at, self._parts = time.monotonic(), 0
        self._parts += 1
        part = ReadModelDeltas()
        with transaction.atomic():
            yield part
        self.pending.merge(part)

    @property
    def open(self) -> bool:
        return self._transaction is not None

    def due(self) -> bool:
        """Whether the open transaction has held the write lock long enough."""
        if self._transaction is None:
            return False
        return self._parts >= MAX_FILES or time.monotonic() - self._opened_at >= MAX_SECONDS

    def commit_if_due(self) -> None:
        if self.due():
            held = time.monotonic() - self._opened_at
            self.commit()
            if connection.vendor == "sqlite" and not connection.in_atomic_block:
                time.sleep(pause_after(held))
            self.statistics.refresh()

    def commit(self) -> None:
        """Apply the read models' changes, then commit the open transaction (there is
        one: call when `due()` or at the end)."""
        try:
            self._apply_pending()
        except BaseException:
            self._end(sys.exc_info())
            raise
        current, self._transaction = self._transaction, None
        current.__exit__(None, None, None)
        self.ids.transaction_ended()
        self.statistics.committed()

    def _apply_pending(self) -> None:
        """The transaction's read model changes, in their savepoint: one that meets
        another writer's (which cannot happen between ingests, that take the rows in
        one order, but can with any other writer) is rolled back alone and tried again."""
        if self.pending:
            retried(self.pending.apply, locked_too=True, what="read models' apply")


class Allocators(dict):
    """The id allocator of each model (`ids[Run].next()`) for the files of a batch:
    one set per transaction on SQLite (its ids are max(id) + 1 onwards while the
    write lock is held), kept across transactions on PostgreSQL (sequence values
    once reserved stay ours), so a small file costs no id query."""

    def __missing__(self, model) -> IdAllocator:
        allocator = self[model] = IdAllocator(model)
        return allocator

    def transaction_ended(self) -> None:
        if connection.vendor != "postgresql":
            self.clear()


def pause_after(held: float) -> float:
    """How long to leave SQLite's lock free after holding it `held` seconds: long
    enough for a writer that waited all that time to come back for it."""
    for waited, retry in _RETRY_WITHIN:
        if held < waited:
            return min(retry, SQLITE_PAUSE_SECONDS)
    return SQLITE_PAUSE_SECONDS


def retryable(exc: BaseException) -> bool:
    """Whether a statement failed only because another writer held what it needed:
    the same writes tried again (after `backoff`) can succeed."""
    return writers_met(exc) or sqlite_locked(exc)


def retried(write: Callable[[], T], *, locked_too: bool = False, what: str = "a delete") -> T:
    """`write()` in a transaction (a savepoint inside one) of its own, rolled back and
    tried again (after `backoff`, up to ATTEMPTS times) when it met another writer, as
    the ingest tries a file again: prune and the delete buttons lock runs in id order
    while an ingest locks them in its file's order, so on PostgreSQL the two can
    deadlock and one is failed (40P01). SQLite's write lock not had within the busy
    timeout is tried again only when `locked_too` (a command): a request has already
    waited that long (30 s), and five more waits would outlast the web server's."""
    for attempt in range(ATTEMPTS):
        try:
            with transaction.atomic():
                return write()
        except DatabaseError as exc:
            again = writers_met(exc) or (locked_too and sqlite_locked(exc))
            if attempt + 1 == ATTEMPTS or not again:
                raise
            log.info("%s met another writer (%s); again", what, exc)
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def writers_met(exc: BaseException) -> bool:
    """PostgreSQL broke a deadlock or a serialization conflict by failing this
    statement: its transaction (or the savepoint it ran in) is to be tried again."""
    return not sqlstates(exc).isdisjoint(RETRY_SQLSTATES)


def sqlstates(exc: BaseException) -> set[str | None]:
    """PostgreSQL's SQLSTATE of the error and of the driver's error it wraps."""
    return {getattr(error, "sqlstate", None) for error in (exc, exc.__cause__)}


def sqlite_locked(exc: BaseException) -> bool:
    """SQLite's write lock was not free within the busy timeout."""
    return connection.vendor == "sqlite" and "database is locked" in str(exc)


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: doubling, jittered so that two
    writers that met do not meet again at once."""
    return FIRST_BACKOFF_SECONDS * 2**attempt * random.uniform(0.5, 1.5)
