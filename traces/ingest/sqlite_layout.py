"""SQLite helpers shared by the duckflux, runs and workflow parsers. No Django here.

Databases are read from a private snapshot (`open_sqlite_snapshot`), or for
sniffing read-only without a copy (`query_readonly`, `readonly_schema`), both
retried while the writer holds its lock. Tables and columns are looked up by
normalised name (`step_links` = `stepLinks`), a missing optional column reads
as NULL, rows come out in batches as tuples (`select_list`: columns by position)
or, one per run, as dicts keyed by normalised column name, and values are
decoded leniently (epoch or ISO times, JSON or plain text) because the
databases are written by other people's code.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import lenient_text, parse_epoch_ms, parse_iso, read_head
from .records import ParseError, Status

SQLITE_MAGIC = b"SQLite format 3\x00"
# What reading a damaged SQLite file raises: Python's sqlite3 decodes column
# names and SQLite's error messages (which quote the schema) strictly as UTF-8.
SQLITE_ERRORS = (sqlite3.DatabaseError, UnicodeDecodeError)
BATCH = 500
# Below this an epoch number is taken as seconds (1e11 s is the year 5138; 1e11 ms is 1973).
_EPOCH_SECONDS_BELOW = 1e11
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def is_sqlite(head: bytes) -> bool:
    return head.startswith(SQLITE_MAGIC)


def normalise_name(name: str) -> str:
    """`step_links`, `stepLinks` and `StepLinks` all become `steplinks`."""
    return name.replace("_", "").lower()


# --- opening: a private snapshot, or read-only without a copy -------------------------------


@contextlib.contextmanager
def open_sqlite_snapshot(
    path: Path, *, retries: int = 40, wait: float = 0.25
) -> Iterator[sqlite3.Connection]:
    """A consistent, private copy of a SQLite database another program may be writing.

    The source is opened read-only (no journal is ever created beside it) and
    copied with SQLite's online backup in one step, under one read lock, so a
    writer changing the database cannot give us half a run. "database is
    locked" is retried. The copy lives in a temporary file, so memory does not
    grow with the database; it is deleted on exit.
    """
    tmpdir = tempfile.mkdtemp(prefix="tracer-snapshot-")
    copy_path = os.path.join(tmpdir, "snapshot.sqlite")
    try:
        query_readonly(path, lambda source: _backup(source, copy_path), retries=retries, wait=wait)
        conn = sqlite3.connect(copy_path)
        conn.row_factory = sqlite3.Row
        conn.text_factory = _LENIENT_TEXT
        try:
            yield conn
        finally:
            conn.close()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# `lenient_text` without a Python call per value read (SQLite calls it for each text).
_LENIENT_TEXT = operator.methodcaller("decode", "utf-8", "replace")


def _backup(source: sqlite3.Connection, copy_path: str) -> None:
    target = sqlite3.connect(copy_path)
    try:
        # A private temporary copy: nothing to make durable (saves an fsync).
        target.execute("PRAGMA synchronous = OFF")
        source.backup(target, pages=-1)
    finally:
        target.close()


def query_readonly(path: Path, read, *, retries: int = 40, wait: float = 0.25):
    """Run `read(conn)` on a read-only connection to a SQLite file, retrying
    while its writer holds the lock. For sniffing: no copy is made."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    for attempt in range(retries + 1):
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=wait)
            # Table and column names are text the writer chose: not always UTF-8.
            conn.text_factory = lenient_text
            try:
                return read(conn)
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise ParseError(f"cannot read SQLite database: {exc}") from exc
            if attempt == retries:
                raise ParseError(
                    f"database stayed locked by its writer for {retries * wait:.0f} s; try again"
                ) from exc
            time.sleep(wait)
        except SQLITE_ERRORS as exc:
            raise corrupt_sqlite(exc) from exc
    raise AssertionError("unreachable")


def corrupt_sqlite(exc: Exception) -> ParseError:
    """The ParseError for one of SQLITE_ERRORS."""
    if isinstance(exc, UnicodeDecodeError):
        reason = "its schema holds a name that is not UTF-8"
    else:
        reason = str(exc)
    return ParseError(f"corrupt or unreadable SQLite database: {reason}")


# --- tables and columns ----------------------------------------------------------------------


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Table:
    """A table found in a database, with its columns by normalised name."""

    name: str
    columns: dict[str, str]
    schema: str = ""  # an attached database's name, e.g. the events copy

    @property
    def sql(self) -> str:
        prefix = f"{quote_ident(self.schema)}." if self.schema else ""
        return prefix + quote_ident(self.name)

    def has(self, column: str) -> bool:
        return normalise_name(column) in self.columns

    def col(self, column: str, alias: str = "") -> str:
        """The column as an SQL expression, or NULL when the table lacks it."""
        real = self.columns.get(normalise_name(column))
        if real is None:
            return "NULL"
        return f"{alias}.{quote_ident(real)}" if alias else quote_ident(real)

    def real_name(self, normalised: str) -> str:
        return self.columns.get(normalised, normalised)


def find_table(
    conn: sqlite3.Connection,
    tables: dict[str, str],
    name: str,
    required: Sequence[str] = (),
    *,
    optional: bool = False,
    schema: str = "",
) -> Table | None:
    """The table `name` (any spelling) with its `required` columns checked.

    `tables` is `schema_tables(conn, schema)`. A missing table is None when
    `optional`, else a ParseError naming it."""
    real = tables.get(normalise_name(name))
    if real is None:
        if optional:
            return None
        raise ParseError(f'database has no table "{name}"')
    columns = table_columns(conn, real, schema)
    for column in required:
        if normalise_name(column) not in columns:
            raise ParseError(f'table "{real}" has no column "{column}"')
    return Table(real, columns, schema)


def schema_tables(conn: sqlite3.Connection, schema: str = "") -> dict[str, str]:
    """Normalised table name -> real name, in the main or an attached database."""
    master = f"{quote_ident(schema)}.sqlite_master" if schema else "sqlite_master"
    rows = conn.execute(f"SELECT name FROM {master} WHERE type='table'").fetchall()
    return {normalise_name(row[0]): row[0] for row in rows}


def table_columns(conn: sqlite3.Connection, table: str, schema: str = "") -> dict[str, str]:
    pragma = f"PRAGMA {quote_ident(schema)}." if schema else "PRAGMA "
    rows = conn.execute(f"{pragma}table_info({quote_ident(table)})").fetchall()
    return {normalise_name(row[1]): row[1] for row in rows}


def ensure_index(conn: sqlite3.Connection, table: Table, columns: Sequence[str]) -> None:
    """Index `columns` on the private snapshot copy unless an index already starts with them."""
    reals = [table.columns.get(normalise_name(c)) for c in columns]
    if None in reals or _has_index(conn, table, reals):
        return
    prefix = f"{quote_ident(table.schema)}." if table.schema else ""
    name = prefix + quote_ident("tracer_" + "_".join([table.name, *reals]))
    cols = ", ".join(quote_ident(c) for c in reals)
    conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {quote_ident(table.name)} ({cols})")


def _has_index(conn: sqlite3.Connection, table: Table, columns: list[str]) -> bool:
    pragma = f"PRAGMA {quote_ident(table.schema)}." if table.schema else "PRAGMA "
    for index in conn.execute(f"{pragma}index_list({quote_ident(table.name)})").fetchall():
        info = conn.execute(f"{pragma}index_info({quote_ident(index[1])})").fetchall()
        leading = [row[2] for row in sorted(info)][: len(columns)]
        if leading == columns:
            return True
    return False


def select_list(
    table: Table,
    names: Sequence[str],
    known: frozenset[str],
    computed: Sequence[str] = (),
    alias: str = "",
) -> tuple[str, list[str]]:
    """A SELECT list of `names` (NULL for a column the table lacks), then the
    `computed` SQL expressions, then the table's columns outside `known`; and those
    columns' real names. Rows then come as tuples in that order, each value read by
    its position instead of through a dict per row."""
    extras = [real for norm, real in table.columns.items() if norm not in known]
    prefix = f"{alias}." if alias else ""
    columns = [table.col(name, alias) for name in names] + list(computed)
    columns += [prefix + quote_ident(real) for real in extras]
    return ", ".join(columns), extras


def fetch_rows(cursor: sqlite3.Cursor, size: int = BATCH) -> Iterator[tuple]:
    """A cursor's rows as tuples, fetched `size` at a time."""
    while batch := cursor.fetchmany(size):
        yield from batch


def extra_values(names: list[str], values: Sequence) -> dict[str, Any]:
    """The extra columns of `select_list` by real name (`extra_columns` of a tuple row)."""
    return {name: jsonable(value) for name, value in zip(names, values, strict=True)}


def iter_rows_and_extras(
    cursor: sqlite3.Cursor, extra: int, size: int = BATCH
) -> Iterator[tuple[dict[str, Any], tuple, tuple]]:
    """For `SELECT t.*, <extra computed columns> ...`: each row as a dict keyed by
    normalised column name, the values of its own columns in order (for a
    fingerprint), and the `extra` computed values."""
    names = [normalise_name(d[0]) for d in cursor.description[:-extra]]
    while batch := cursor.fetchmany(size):
        for row in batch:
            own = row[:-extra]
            yield dict(zip(names, own, strict=True)), own, row[-extra:]


def chunks(items: Sequence, size: int = BATCH) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


def sqlite_guard(func: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """Turn SQLite errors raised while a generator runs into ParseError: a
    corrupt page is often met only when a run's children are read."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            yield from func(*args, **kwargs)
        except SQLITE_ERRORS as exc:
            raise corrupt_sqlite(exc) from exc

    return wrapper


class Snapshot:
    """The open snapshot connection, shared by a parse and its lazy children."""

    def __init__(self, conn: sqlite3.Connection):
        conn.row_factory = None
        self.conn = conn
        self.closed = False

    def check(self) -> sqlite3.Connection:
        if self.closed:
            raise ParseError(
                "a run's steps, calls, links or logs were read after parse() finished; "
                "consume them while iterating"
            )
        return self.conn

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path) -> Iterator[Snapshot]:
        """A private snapshot of `path` (`open_sqlite_snapshot`), marked closed on exit."""
        with open_sqlite_snapshot(path) as conn:
            snap = cls(conn)
            try:
                yield snap
            finally:
                snap.closed = True


# --- sniffing without a copy ---------------------------------------------------------------


def readonly_schema(path: Path, tables: Iterable[str] = ()) -> dict[str, set[str]]:
    """Normalised table names of a SQLite file, with the normalised columns of
    the `tables` asked for (empty sets for the others). Read-only, no copy."""
    wanted = {normalise_name(t) for t in tables}
    return query_readonly(path, lambda conn: _schema(conn, wanted))


def _schema(conn: sqlite3.Connection, wanted: set[str]) -> dict[str, set[str]]:
    return {
        norm: set(table_columns(conn, real)) if norm in wanted else set()
        for norm, real in schema_tables(conn).items()
    }


def sqlite_schema_or_none(path: Path, tables: Iterable[str] = ()) -> dict[str, set[str]] | None:
    """The schema of a readable SQLite file, else None (not SQLite, unreadable, corrupt)."""
    try:
        if not is_sqlite(read_head(path, 16)):
            return None
        return readonly_schema(path, tables)
    except (OSError, ParseError):
        return None


# --- values ----------------------------------------------------------------------------------


def to_time(value: Any, where: str = "") -> datetime | None:
    """ISO-8601 text or epoch seconds/milliseconds (number or numeric text) to aware UTC."""
    if value is None or value == "":
        return None
    if type(value) is str and value[4:5] == "-" and value[:4].isdigit():
        return parse_iso(value, where)  # ISO text (most times): no number test
    if isinstance(value, bytes | memoryview):
        value = jsonable(value)
    if isinstance(value, bool):
        raise ParseError(f"{where}: {value!r} is not a timestamp")
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, int | float):
        millis = value * 1000 if abs(value) < _EPOCH_SECONDS_BELOW else value
        return parse_epoch_ms(millis, where)
    return parse_iso(value, where)


# Text times read recently: rows of one run share their times (to the second, often),
# and `to_time` of the same text is the same (immutable) datetime.
_TIMES: dict[str, datetime | None] = {}
_TIMES_KEPT = 4096


def lenient_time(value: Any, attributes: dict, label: str) -> datetime | None:
    """`to_time`, but an unreadable value becomes None and is kept in attributes."""
    if type(value) is str:
        moment = _TIMES.get(value, _UNREAD)
        if moment is not _UNREAD:
            return moment
    try:
        moment = to_time(value, label)
    except ParseError:
        attributes.setdefault("unreadable_times", {})[label] = jsonable(value)
        return None
    if type(value) is str:
        if len(_TIMES) >= _TIMES_KEPT:
            _TIMES.clear()
        _TIMES[value] = moment
    return moment


_UNREAD = object()


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return lenient_text(bytes(value))
    return value


def as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def as_float(value: Any) -> float | None:
    """A finite number, or None (text such as 'INF' or 'NaN' reads as a float)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def shared_ids(conn: sqlite3.Connection, table: Table) -> dict[str, int]:
    """Ids that more than one row of `table` has (a table without its primary
    key): rows sharing an id are one run to the store, the last one read stays."""
    key = f"COALESCE(CAST({table.col('id')} AS TEXT), '')"
    sql = f"SELECT {key}, count(*) FROM {table.sql} GROUP BY 1 HAVING count(*) > 1"
    return {as_text(key): count for key, count in conn.execute(sql)}


def as_text(value: Any) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    return jsonable(value) if isinstance(value, bytes | memoryview) else str(value)


_STATUS_WORDS = {
    **dict.fromkeys(("pending", "queued", "created", "waiting"), Status.PENDING),
    **dict.fromkeys(("running", "started", "inprogress", "retrying"), Status.RUNNING),
    **dict.fromkeys(
        ("completed", "complete", "succeeded", "success", "successful", "ok", "done"),
        Status.SUCCEEDED,
    ),
    **dict.fromkeys(
        ("failed", "failure", "error", "errored", "timeout", "timedout"), Status.FAILED
    ),
    **dict.fromkeys(("skipped",), Status.SKIPPED),
    **dict.fromkeys(("cancelled", "canceled", "aborted"), Status.CANCELLED),
}


def normalise_status(word: Any, overrides: dict[str, str] | None = None) -> str:
    """A source's status word as a `Status`. An unknown word counts as running:
    it claims neither success nor failure, and a quiet running run turns stale."""
    if overrides is None and type(word) is str:
        status = _STATUS_SEEN.get(word)
        if status is None:
            if len(_STATUS_SEEN) >= _TIMES_KEPT:
                _STATUS_SEEN.clear()
            status = _STATUS_SEEN[word] = _status_of(word, None)
        return status
    return _status_of(word, overrides)


# A source uses a handful of status words, each read for every row.
_STATUS_SEEN: dict[str, str] = {}


def _status_of(word: Any, overrides: dict[str, str] | None) -> str:
    key = normalise_name(as_text(word)).replace("-", "").replace(" ", "")
    if overrides and key in overrides:
        return overrides[key]
    return _STATUS_WORDS.get(key, Status.RUNNING)


def derive_status(statuses: Iterable[str]) -> str:
    """The status of something made of parts with these statuses: unfinished
    while any part is, else failed if any failed, skipped if all were."""
    seen = set(statuses)
    for status in (Status.RUNNING, Status.PENDING, Status.FAILED, Status.CANCELLED):
        if status in seen:
            return status
    return Status.SKIPPED if seen == {Status.SKIPPED} else Status.SUCCEEDED


def column_set(names: str) -> frozenset[str]:
    """Normalised column names from a space-separated list."""
    return frozenset(normalise_name(name) for name in names.split())


def extra_columns(table: Table, row: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """Columns the format does not define, by their real name, so nothing is lost."""
    return {table.real_name(k): jsonable(v) for k, v in row.items() if k not in known}
