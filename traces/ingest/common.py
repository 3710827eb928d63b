"""Helpers shared by the format parsers. No Django here."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
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
# What reading a damaged SQLite file raises: Python's sqlite3 decodes column
# names and SQLite's error messages (which quote the schema) strictly as UTF-8.
SQLITE_ERRORS = (sqlite3.DatabaseError, UnicodeDecodeError)
TRUNCATED_SUFFIXES = ("...[truncated]", "[truncated]")

# Python's datetime covers years 1..9999; a trace may claim anything.
_MIN_EPOCH_MS = -62135596800000
_MAX_EPOCH_MS = 253402300799000
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?", re.ASCII)


def brief(value: Any, limit: int = 60) -> str:
    """A value for an error message: its repr, cut short (a field can hold 100 MB)."""
    text = repr(value) if isinstance(value, str) else json_text(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        if _DECIMAL.fullmatch(text):
            return parse_epoch_ms(float(text), where)
        raise ParseError(f"{where}: {brief(value)} is not a timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past year 9999 in UTC
        raise ParseError(f"{where}: timestamp {brief(value)} is out of range") from None


def parse_epoch_ms(value: Any, where: str = "") -> datetime | None:
    """Epoch milliseconds to aware UTC; out-of-range values raise ParseError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{where}: expected epoch milliseconds, got {type(value).__name__}")
    if math.isnan(value) or not (_MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS):
        raise ParseError(f"{where}: timestamp {brief(value)} is out of range")
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        raise ParseError(f"{where}: timestamp {brief(value)} is out of range") from None


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
        digest.update(json_bytes(part, sort_keys=True))
        digest.update(b"\x1e")
    return digest.hexdigest()


def json_bytes(value: Any, *, sort_keys: bool = False) -> bytes:
    """`json_text()` as UTF-8, without a str copy of the text in between (a
    value can be 100 MB)."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    try:
        return orjson.dumps(value, option=option, default=str)
    except TypeError:  # orjson.JSONEncodeError is one
        return _iterative_json(value, sort_keys, ascii_only=True).encode()


def json_text(value: Any, *, sort_keys: bool = False, ascii_only: bool = True) -> str:
    """Compact JSON text of a parsed value, for hashes and messages; never raises.

    orjson when it can. It refuses integers past 64 bits, nesting past 254
    levels and lone surrogates, which hostile traces have: those values go
    through a slower writer that uses no recursion. With `ascii_only` that
    writer escapes everything non-ASCII (so a lone surrogate stays text). What
    is not JSON becomes its str()."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    try:
        return orjson.dumps(value, option=option, default=str).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return _iterative_json(value, sort_keys, ascii_only)


def _iterative_json(value: Any, sort_keys: bool, ascii_only: bool) -> str:
    out: list[str] = []
    # (True, text) is written as is; (False, value) is a value still to write.
    stack: list[tuple[bool, Any]] = [(False, value)]

    def scalar(item: Any) -> str:
        if item is None or isinstance(item, bool | str):
            return json.dumps(item, ensure_ascii=ascii_only)
        if isinstance(item, int):
            try:
                return str(item)
            except ValueError:  # past Python's 4300 digits
                return json.dumps(f"<an integer of about {item.bit_length() * 3 // 10} digits>")
        if isinstance(item, float):
            return repr(item) if math.isfinite(item) else "null"
        return json.dumps(str(item), ensure_ascii=ascii_only)

    while stack:
        is_text, item = stack.pop()
        if is_text:
            out.append(item)
        elif isinstance(item, dict):
            keys = list(item)
            if sort_keys:
                keys.sort(key=str)
            out.append("{")
            stack.append((True, "}"))
            for index in range(len(keys) - 1, -1, -1):
                key = keys[index]
                stack.append((False, item[key]))
                name = key if isinstance(key, str) else str(key)
                comma = "," if index else ""
                stack.append((True, comma + json.dumps(name, ensure_ascii=ascii_only) + ":"))
        elif isinstance(item, list | tuple):
            out.append("[")
            stack.append((True, "]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append((False, item[index]))
                if index:
                    stack.append((True, ","))
        else:
            out.append(scalar(item))
    return "".join(out)


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
        conn.text_factory = lenient_text
        try:
            yield conn
        finally:
            conn.close()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def sqlite_reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "its schema holds a name that is not UTF-8"
    return str(exc)


def corrupt_sqlite(exc: Exception) -> ParseError:
    """The ParseError for one of SQLITE_ERRORS."""
    return ParseError(f"corrupt or unreadable SQLite database: {sqlite_reason(exc)}")


def lenient_text(raw: bytes) -> str:
    """SQLite TEXT as str: a writer's bytes need not be UTF-8."""
    return raw.decode("utf-8", errors="replace")


def _backup_with_retry(path: Path, copy_path: str, *, retries: int, wait: float) -> None:
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    for attempt in range(retries + 1):
        try:
            source = sqlite3.connect(uri, uri=True, timeout=wait)
            try:
                target = sqlite3.connect(copy_path)
                try:
                    # A private temporary copy: nothing to make durable (saves an fsync).
                    target.execute("PRAGMA synchronous = OFF")
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
        except SQLITE_ERRORS as exc:
            raise corrupt_sqlite(exc) from exc


def sqlite_tables(conn: sqlite3.Connection) -> dict[str, str]:
    """Normalised table name -> real table name."""
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    except SQLITE_ERRORS as exc:
        raise ParseError(f"corrupt SQLite database: {sqlite_reason(exc)}") from exc
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
            # Table and column names are text the writer chose: not always UTF-8.
            conn.text_factory = lenient_text
            try:
                return read(conn)
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if ("locked" in str(exc) or "busy" in str(exc)) and attempt < retries:
                time.sleep(wait)
                continue
            raise ParseError(f"cannot read SQLite database: {exc}") from exc
        except SQLITE_ERRORS as exc:
            raise corrupt_sqlite(exc) from exc
    raise AssertionError("unreachable")


def sqlite_table_names_readonly(path: Path) -> set[str]:
    """Normalised table names of a SQLite file, for sniffing, without copying it."""
    rows = query_readonly(
        path,
        lambda conn: conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall(),
    )
    return {normalise_name(row[0]) for row in rows}
