"""SQL shared by the read models' upserts (`INSERT ... ON CONFLICT DO UPDATE`,
the stored row as `t`, the offered one as `excluded`): a bound kept as the
earliest or latest of the two, NULL standing for "none" on either side."""

from __future__ import annotations

from django.db import connection


def earliest(column: str) -> str:
    """The stored or the offered value of `column`, whichever is earlier."""
    if connection.vendor == "postgresql":
        return f"LEAST(t.{column}, excluded.{column})"  # NULLs are ignored
    # SQLite's min() and max() of two values are NULL if either is.
    return f"COALESCE(min(t.{column}, excluded.{column}), t.{column}, excluded.{column})"


def latest(column: str) -> str:
    """The stored or the offered value of `column`, whichever is later."""
    if connection.vendor == "postgresql":
        return f"GREATEST(t.{column}, excluded.{column})"
    return f"COALESCE(max(t.{column}, excluded.{column}), t.{column}, excluded.{column})"
