"""The transactions of an ingest.

One transaction per file costs each small file its BEGIN and COMMIT, and one for a
whole big database holds SQLite's single write lock for the whole ingest (an
upload or a login waited 24 s behind a 500-run database). So files share a
transaction, committed once it holds MAX_FILES files or has been open MAX_SECONDS,
and a database whose runs stand whole on their own commits between runs; then the
lock is left free a moment. A write from the site waits about that long at most.
Inside the transaction each file (or each part of a database) has its own
savepoint, so a bad file still rolls back alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from django.db import connection, transaction

from .inserters import IdAllocator

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

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._transaction is None:
            return
        if exc_info[0] is None:
            self.commit()
        else:
            current, self._transaction = self._transaction, None
            current.__exit__(*exc_info)
            self.ids.transaction_ended()

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """One file's writes (or one part of a big file's): rolled back alone if
        the block raises, kept in the batch otherwise."""
        if self._transaction is None:
            self._transaction = transaction.atomic()
            self._transaction.__enter__()
            self._opened_at, self._parts = time.monotonic(), 0
        self._parts += 1
        with transaction.atomic():
            yield

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

    def commit(self) -> None:
        """Commit the open transaction (there is one: call when `due()` or at the end)."""
        current, self._transaction = self._transaction, None
        current.__exit__(None, None, None)
        self.ids.transaction_ended()


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
