"""A failure's cause: its error message without the particulars (ids, numbers,
times), so that failures of the same cause group together. Pure Python: the store
computes it once per failed step at ingest (Step.error_cause), the models size
their columns by it, and queries.errors groups by it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

NORMALISED_MAX = 300
# The cause of failed steps that carry no message at all.
NO_MESSAGE = "<no message>"


# --- normalised error messages ---------------------------------------------------------

_HEX = "0-9a-fA-F"
_UNIT = "ns|us|µs|ms|s|m|h|d"
_UNIT_WORD = (
    "nanoseconds?|microseconds?|milliseconds?|seconds?|secs?|minutes?|mins?|hours?|hrs?|days?"
)
_TIMESTAMP = r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
_UUID = rf"\b[{_HEX}]{{8}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{12}}\b"
_NAMES = "(?:utf|ucs|iso|sha|md|ipv|tls|ssl|http|x86)"
_DURATION = rf"(?<![\w.])\d+(?:\.\d+)?(?:{_UNIT})(?:\d+(?:\.\d+)?(?:{_UNIT}))*\b"
# Order matters: the specific shapes first, so a UUID is not read as numbers.
_PLACEHOLDERS: list[tuple[re.Pattern, str]] = [
    # Long quoted values are data (a payload, a statement), not a cause.
    (re.compile(r'"(?:[^"\\\n]|\\.){61,}"'), '"<value>"'),
    (re.compile(r"(?<![A-Za-z])'[^'\n]{61,}'(?![A-Za-z])"), "'<value>'"),
    (re.compile(_TIMESTAMP), "<time>"),
    (re.compile(_UUID), "<id>"),
    # ULID: 26 Crockford base32 characters, with at least one digit.
    (re.compile(r"\b(?=[0-9A-HJKMNP-TV-Z]*\d)[0-9A-HJKMNP-TV-Z]{26}\b"), "<id>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (re.compile(rf"\b0x[{_HEX}]+\b"), "<id>"),
    # Hex ids (hashes, object ids): 8+ hex characters mixing digits and letters.
    (re.compile(rf"\b(?=[{_HEX}]*\d)(?=[{_HEX}]*[a-fA-F])[{_HEX}]{{8,}}\b"), "<id>"),
    # Prefixed ids: SKU-1042, tx_b337a9c51fc2, page_1 (a word, a separator, then a digit
    # somewhere), except names like utf-8 and sha-256.
    (re.compile(rf"\b(?!{_NAMES}[-_]\d)[A-Za-z]+[-_#](?=[\w-]*\d)[\w-]+", re.IGNORECASE), "<id>"),
    # Random ids: 12+ letters and digits mixed.
    (re.compile(r"\b(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{12,}\b"), "<id>"),
    (re.compile(_DURATION), "<duration>"),
    (re.compile(rf"(?<![\w.])\d+(?:\.\d+)?\s(?:{_UNIT_WORD})\b"), "<duration>"),
    # Numbers not glued to a letter: 503, 4.7.0, 10.0.0.1:5432, 1,000 (but not v2, E11000).
    (re.compile(r"(?<![A-Za-z0-9.])\d+(?:[.,:]\d+)*(?![A-Za-z0-9])"), "<n>"),
]
_WHITESPACE = re.compile(r"\s+")


def normalise_error(message: str) -> str:
    """The cause of an error message without its particulars, so failures of the same
    cause group together: `insufficient stock for sku SKU-1042: requested 3` becomes
    `insufficient stock for sku <id>: requested <n>`.

    The first line only (a Python traceback's last line, where the exception is),
    with numbers, ids (UUID, ULID, hex, prefixed like SKU-1042), e-mail addresses,
    timestamps, durations and long quoted values replaced by placeholders;
    whitespace collapsed; at most 300 characters. Short quoted names
    (`relation "facts"`) are kept: they usually name the cause.
    """
    line = _headline(message)
    for pattern, placeholder in _PLACEHOLDERS:
        line = pattern.sub(placeholder, line)
    line = _WHITESPACE.sub(" ", line).strip()
    if len(line) > NORMALISED_MAX:
        line = line[: NORMALISED_MAX - 1].rstrip() + "…"
    return line


# A cause is at most 300 characters: reading past this much of a message cannot
# change it (beyond a quoted value longer than this), and the placeholders'
# patterns would take a minute over a 100 MB message.
HEADLINE_READ = 65536


def _headline(message: str) -> str:
    head = (message or "")[:HEADLINE_READ]
    lines = [line for line in head.splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].startswith("Traceback (most recent call last)"):
        tail = [line for line in message.rstrip()[-HEADLINE_READ:].splitlines() if line.strip()]
        return (tail or lines)[-1]
    return lines[0]


def error_cause(message: str) -> str:
    """What Step.error_cause holds for a failed step with this error."""
    return normalise_error(message) or NO_MESSAGE


# The day of a failure without a time (neither the step nor its run has one): the
# read model's key needs a value, and no trace is dated 1 January of the year 1.
NO_DAY = date(1, 1, 1)


def failure_day(moment: datetime | None) -> date:
    """The UTC day a failure counts on, from its time (the step's start, else its
    run's: the time the causes box has always used). Naive times are UTC."""
    if moment is None:
        return NO_DAY
    return as_utc(moment).date()


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# FailureSlice counts failures in slots of this many minutes of UTC time, and
# failures without a time in NO_SLOT.
SLOT_MINUTES = 10
SLOT = timedelta(minutes=SLOT_MINUTES)
NO_SLOT = datetime(1, 1, 1, tzinfo=UTC)


def failure_slot(moment: datetime | None) -> datetime:
    """The start of the slot a failure counts in, from its time as failure_day."""
    if moment is None:
        return NO_SLOT
    return slot_start(as_utc(moment))


def slot_start(moment: datetime) -> datetime:
    """The start of the slot holding a time, in UTC."""
    moment = as_utc(moment)
    minute = moment.minute - moment.minute % SLOT_MINUTES
    return moment.replace(minute=minute, second=0, microsecond=0)


def slot_end(moment: datetime) -> datetime:
    """The last instant of the slot holding a time, in UTC."""
    return slot_start(moment) + SLOT - timedelta(microseconds=1)
