"""Helpers shared by the format parsers. No Django here."""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from .records import ParseError

TRUNCATED_SUFFIXES = ("...[truncated]", "[truncated]")

# Python's datetime covers years 1..9999; a trace may claim anything.
_MIN_EPOCH_MS = -62135596800000
_MAX_EPOCH_MS = 253402300799000
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?", re.ASCII)


_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def brief(value: Any, limit: int = 60, *, style: Literal["repr", "json", "typed"] = "repr") -> str:
    """A value for a message, cut to `limit` characters (a field can hold 100 MB).

    - "repr": a string as its repr ('noon'), anything else as compact JSON;
    - "json": everything as compact JSON ("noon"), as the file wrote it;
    - "typed", for "expected X, got Y": an object or a list by its kind (a list),
      anything else as JSON, preceded by its kind when cut (a string "abc...").
    """
    typed = style == "typed"
    if typed and isinstance(value, dict | list):
        return _kind(value)
    text = repr(value) if style == "repr" and isinstance(value, str) else json_text(value)
    if len(text) <= limit:
        return text
    cut = text[: limit - 3] + "..."
    return f"{_kind(value)} {cut}" if typed else cut


def wrong_type(where: str, expected: str, value: Any, limit: int = 60) -> ParseError:
    """The error for a value of the wrong type: `steps[3].seq: expected an integer, got "x"`."""
    return ParseError(f"{where}: expected {expected}, got {brief(value, limit, style='typed')}")


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), "null" if value is None else "a number")


def utc_iso(value: Any) -> datetime | None:
    """ISO text in UTC as Python reads it as it is ("Z", any fraction digits), else
    None: most timestamps, read without `parse_iso`'s long way."""
    if type(value) is not str:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is UTC else None


def parse_iso(value: Any, where: str = "") -> datetime | None:
    """ISO-8601 / RFC 3339 text (any fraction digits, Z or offset) to aware UTC.

    Empty or None gives None; anything unreadable raises ParseError."""
    if value is None or value == "":
        return None
    if type(value) is str:
        # Most times are already UTC ISO text that Python reads as it is (3.11:
        # "Z", any fraction digits): one call. Anything else takes the long way.
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is UTC:
                return parsed
            if parsed.tzinfo is None and value[:1].isdigit() and value[-1:].isdigit():
                return parsed.replace(tzinfo=UTC)
        return _parse_iso_text(value, where)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return parse_epoch_ms(value, where)
    if not isinstance(value, str):
        raise wrong_type(where, "a timestamp", value)
    return _parse_iso_text(value, where)


def _parse_iso_text(value: str, where: str) -> datetime:
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
        raise wrong_type(where, "epoch milliseconds", value)
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
    if type(value) is not str:
        if value is None:
            return None, False
        if isinstance(value, bytes | bytearray | memoryview):
            value = lenient_text(bytes(value))
        if not isinstance(value, str):
            return value, False
    try:
        return _loads(value), value.endswith(TRUNCATED_SUFFIXES)
    except _JSONDecodeError:
        return value, value.endswith(TRUNCATED_SUFFIXES)


_loads, _JSONDecodeError = orjson.loads, orjson.JSONDecodeError
_dumps, _SORTED = orjson.dumps, orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS


def is_truncated(value: Any) -> bool:
    return isinstance(value, str) and value.endswith(TRUNCATED_SUFFIXES)


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (dict keys sorted)."""
    digest = hashlib.sha256()
    update = digest.update
    for part in parts:
        try:  # json_bytes(part, sort_keys=True), without a call per part
            update(_dumps(part, option=_SORTED, default=str))
        except TypeError:
            update(json_bytes(part, sort_keys=True))
        update(b"\x1e")
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


def lenient_text(raw: bytes) -> str:
    """Bytes as str: a writer's bytes need not be UTF-8 (a byte cut can split a character)."""
    return raw.decode("utf-8", errors="replace")
