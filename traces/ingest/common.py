"""Helpers shared by the format parsers. No Django here."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .records import ParseError

SQLITE_MAGIC = b"SQLite format 3\x00"
TRUNCATED_SUFFIXES = ("...[truncated]", "[truncated]")

# Python's datetime covers years 1..9999; a trace may claim anything.
_MIN_EPOCH_MS = -62135596800000
_MAX_EPOCH_MS = 253402300799000


def parse_iso(value: Any, where: str = "") -> datetime | None:
    """ISO-8601 / RFC 3339 text (any fraction digits, Z or offset) to aware UTC.

    Empty or None gives None; anything unreadable raises ParseError."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return parse_epoch_ms(value, where)
    if not isinstance(value, str):
        raise ParseError(f"{where}: expected a timestamp, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Go writes up to 9 fraction digits; Python reads at most 6.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + "." + rest[: min(digits, 6)].ljust(1, "0") + rest[digits:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return parse_epoch_ms(float(text), where)
        raise ParseError(f"{where}: {value!r} is not a timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_epoch_ms(value: Any, where: str = "") -> datetime | None:
    """Epoch milliseconds to aware UTC; out-of-range values raise ParseError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{where}: expected epoch milliseconds, got {type(value).__name__}")
    if math.isnan(value) or not (_MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS):
        raise ParseError(f"{where}: timestamp {value!r} is out of range")
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def duration_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds() * 1000


def loads_json_or_text(value: Any) -> tuple[Any, bool]:
    """Decode a JSON text column that may also hold plain or cut-off text.

    Returns (value, truncated): valid JSON is decoded, anything else is kept
    as the text itself; `truncated` tells whether it ends in a truncation
    marker. Bytes are decoded as UTF-8 with replacement (a byte cut can split
    a character)."""
    if value is None:
        return None, False
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return value, False
    truncated = value.endswith(TRUNCATED_SUFFIXES)
    try:
        return orjson.loads(value), truncated
    except orjson.JSONDecodeError:
        return value, truncated


def is_truncated(value: Any) -> bool:
    return isinstance(value, str) and value.endswith(TRUNCATED_SUFFIXES)


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (dict keys sorted)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(
            orjson.dumps(
                part,
                option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                default=str,
            )
        )
        digest.update(b"\x1e")
    return digest.hexdigest()


def read_head(path: Path, size: int = 65536) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def is_sqlite(head: bytes) -> bool:
    return head.startswith(SQLITE_MAGIC)


def normalise_name(name: str) -> str:
    """`step_links`, `stepLinks` and `StepLinks` all become `steplinks`."""
    return name.replace("_", "").lower()


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
        _backup_with_retry(path, copy_path, retries=retries, wait=wait)
        conn = sqlite3.connect(copy_path)
        conn.row_factory = sqlite3.Row
        conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
        try:
            yield conn
        finally:
            conn.close()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _backup_with_retry(path: Path, copy_path: str, *, retries: int, wait: float) -> None:
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    for attempt in range(retries + 1):
        try:
            source = sqlite3.connect(uri, uri=True, timeout=wait)
            try:
                target = sqlite3.connect(copy_path)
                try:
                    source.backup(target, pages=-1)
                finally:
                    target.close()
            finally:
                source.close()
            return
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                if attempt < retries:
                    time.sleep(wait)
                    continue
                raise ParseError(
                    f"database stayed locked by its writer for {retries * wait:.0f} s; try again"
                ) from exc
            raise ParseError(f"cannot read SQLite database: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise ParseError(f"corrupt or unreadable SQLite database: {exc}") from exc


def sqlite_tables(conn: sqlite3.Connection) -> dict[str, str]:
    """Normalised table name -> real table name."""
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    except sqlite3.DatabaseError as exc:
        raise ParseError(f"corrupt SQLite database: {exc}") from exc
    return {normalise_name(row[0]): row[0] for row in rows}


def sqlite_columns(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    """Normalised column name -> real column name of `table`."""
    rows = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
    return {normalise_name(row[1]): row[1] for row in rows}


def query_readonly(path: Path, read, *, retries: int = 40, wait: float = 0.25):
    """Run `read(conn)` on a read-only connection to a SQLite file, retrying
    while its writer holds the lock. For sniffing: no copy is made."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    for attempt in range(retries + 1):
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=wait)
            try:
                return read(conn)
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if ("locked" in str(exc) or "busy" in str(exc)) and attempt < retries:
                time.sleep(wait)
                continue
            raise ParseError(f"cannot read SQLite database: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise ParseError(f"corrupt or unreadable SQLite database: {exc}") from exc
    raise AssertionError("unreachable")


def sqlite_table_names_readonly(path: Path) -> set[str]:
    """Normalised table names of a SQLite file, for sniffing, without copying it."""
    rows = query_readonly(
        path,
        lambda conn: conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall(),
    )
    return {normalise_name(row[0]) for row in rows}
