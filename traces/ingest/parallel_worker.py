"""The entry point of a worker process of `ingest --jobs N` (started by
parallel.py with the spawn method). Importing it loads no model: the process
sets Django up first."""

from __future__ import annotations


def main(batch: str, database_name: str, options: dict) -> None:
    """Read shares of `batch` until none is left, on the database the planner
    uses (named here: under tests it is not the one the settings name)."""
    import django

    django.setup()
    from django.db import connections

    connections["default"].settings_dict["NAME"] = database_name
    from traces.ingest.parallel import work

    try:
        work(batch, **options)
    finally:
        connections.close_all()
