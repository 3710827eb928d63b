"""PostgreSQL: how the tables an ingest writes store their long values, and which of
their columns ANALYZE samples (migration 0039_pgcopy; RESULTS §17d). SQLite: nothing.

- **lz4**: a value over ~2 kB (a step's input or output, a run's attributes, a long
  message) is compressed as the row is written, by pglz unless the column says
  otherwise: the 50 MB duckflux file's 10 kB payloads cost the server 276 µs a step
  by pglz, 138 µs by lz4 (the same rows COPYed back). Only the way it is stored
  changes: every value reads back the same, a row written before keeps its pglz
  value (both are read), and setting it is a catalog change (no rewrite, quick at
  10 M steps). A server built without lz4 keeps pglz.
- **Unsampled JSON columns**: ANALYZE reads and sorts every column of its 30,000-row
  sample; the JSON values are the dearest to sort (a steps' ANALYZE 450 → 290 ms, a
  log lines' 160 → 60 ms without them) and no query filters, joins or sorts on one
  (they are shown, and read as a whole: groups.py's `input ->> %s` is a value read),
  so their statistics would only ever be read for a row's width. Statistics target 0:
  ANALYZE leaves them out (statistics an older store already holds stay as they were).
"""

from __future__ import annotations

from django.db import DatabaseError

# The tables an ingest writes rows to (read models' counters excepted: short rows).
WRITTEN_TABLES = (
    "traces_run", "traces_step", "traces_call", "traces_entitylink", "traces_logentry",
    "traces_stepgroup", "traces_tracefile",
)  # fmt: skip
# Their JSON columns are left out of ANALYZE (the files' and groups' tables are not
# analyzed by an ingest: statistics.py).
UNSAMPLED_TABLES = WRITTEN_TABLES[:5]

# Columns whose values PostgreSQL may compress: a varlena type stored `extended` or
# `main` (a tsvector, text, varchar, jsonb), with their compression ('l' lz4, 'p'
# pglz, '' the server's default).
COMPRESSIBLE = """
    SELECT attname, attcompression FROM pg_attribute
    WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
    AND attstorage IN ('x', 'm') ORDER BY attnum
"""
# The JSON columns, with their statistics target (-1 the default; NULL on PostgreSQL
# 17+ for the default).
JSON_COLUMNS = """
    SELECT attname, attstattarget FROM pg_attribute
    WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
    AND atttypid = 'jsonb'::regtype ORDER BY attnum
"""


def compressible_columns(cursor, table: str) -> list[tuple[str, str]]:
    cursor.execute(COMPRESSIBLE, [table])
    return list(cursor.fetchall())


def json_columns(cursor, table: str) -> list[tuple[str, int | None]]:
    cursor.execute(JSON_COLUMNS, [table])
    return list(cursor.fetchall())


def lz4_supported(cursor) -> bool:
    """Whether the server was built with lz4 (a setting it refuses otherwise); inside
    a transaction."""
    cursor.execute("SAVEPOINT tracer_lz4")
    try:
        cursor.execute("SET LOCAL default_toast_compression = lz4")
    except DatabaseError:  # an invalid value for the setting
        supported = False
    else:
        supported = True
    cursor.execute("ROLLBACK TO SAVEPOINT tracer_lz4")
    return supported


def apply(cursor, *, undo: bool = False) -> None:
    """Every compressible column of the written tables to lz4 (`undo`: back to the
    server's default), every JSON column of the unsampled tables to statistics target
    0 (`undo`: the default). Catalog changes only; inside a transaction."""
    if undo or lz4_supported(cursor):
        method = "default" if undo else "lz4"
        for table in WRITTEN_TABLES:
            _alter(cursor, table, compressible_columns(cursor, table), f"COMPRESSION {method}")
    for table in UNSAMPLED_TABLES:
        _alter(cursor, table, json_columns(cursor, table), f"STATISTICS {-1 if undo else 0}")


def _alter(cursor, table: str, columns: list[tuple], setting: str) -> None:
    quote = cursor.db.ops.quote_name
    changes = ", ".join(f"ALTER COLUMN {quote(name)} SET {setting}" for name, _ in columns)
    if changes:
        cursor.execute(f"ALTER TABLE {table} {changes}")
