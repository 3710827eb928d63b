"""The entry point of a worker process of `ingest --jobs N` (started by
parallel.py with the spawn method). Importing it loads no model: the process
sets Django up first."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import sys
import threading

# The exit status of a worker whose ingest ended without it (as a SIGKILL's).
ORPHANED = 137


def main(batch: str, database_name: str, options: dict) -> None:
    """Read shares of `batch` until none is left, on the database the planner
    uses (named here: under tests it is not the one the settings name)."""
    _ends_with_its_ingest()
    import django

    django.setup()
    from django.db import connections

    connections["default"].settings_dict["NAME"] = database_name
    from traces.ingest.parallel import work

    try:
        work(batch, **options)
    finally:
        connections.close_all()


def _ends_with_its_ingest() -> None:
    """End this process as soon as the ingest that started it ends without joining it
    (SIGKILL, SIGTERM: a daemon process outlives both), as a kill would end it: the
    file being written rolled back with its transaction, those committed whole. Left
    running, it read the batch's shares on its own for an ingest nobody waits for,
    writing the same files as the next ingest the user starts."""
    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover (always started by parallel.py)
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        sys.stderr.write(f"ingest worker {os.getpid()}: its ingest is gone; stopping\n")
        sys.stderr.flush()
        os._exit(ORPHANED)

    threading.Thread(target=watch, name="ingest-watch", daemon=True).start()
