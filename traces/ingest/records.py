"""Plain records that every format parser yields and `store.py` writes.

This module is the contract between the parsers (which know their format and
nothing of Django) and the store (which knows the database and nothing of
formats). Parsers yield one `RunRecord` per run; its `steps`, `calls`, `links`
and `logs` may be lists or lazy iterables, and the store consumes them in that
order, each at most once, so a parser can stream a run of any size.

Statuses are normalised to `Status`; the source's own word goes in
`raw_status`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Status:
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    ALL = (PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED)
    TERMINAL = (SUCCEEDED, FAILED, SKIPPED, CANCELLED)


class ParseError(Exception):
    """A trace file that cannot be read, with a message meant for a user.

    The message says where (line, offset, table, record) and why; the loader
    puts the file's name in front of it.
    """


@dataclass(slots=True)
class StepRecord:
    """One step. `key` is unique within its run and stable across re-ingests
    (the source's step id, or e.g. the duckflux `seq`). A step's parent is
    always yielded before the step itself."""

    key: str
    name: str = ""
    type: str = ""
    status: str = Status.SUCCEEDED
    raw_status: str = ""
    parent_key: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    input: Any = None
    output: Any = None
    error: str = ""
    attempt: int | None = None
    retries: int | None = None
    retry_of: str = ""
    max_retries: int | None = None
    loop_index: int | None = None
    items_total: int | None = None
    items_processed: int | None = None
    items_succeeded: int | None = None
    items_failed: int | None = None
    entity_type: str = ""
    entity_id: str = ""
    # True when the source cut an input/output/error short; attributes say which.
    truncated: bool = False
    # True when the source never closed the step (left "running" in a finished run).
    never_closed: bool = False
    # A grouping step the source does not have (e.g. workflow's compensation group):
    # shown in the tree, not counted among the run's steps.
    synthetic: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CallRecord:
    """A call (tool invocation) made by a step."""

    key: str
    step_key: str
    tool: str = ""
    operation: str = ""
    status: str = Status.SUCCEEDED
    raw_status: str = ""
    attempt: int | None = None
    retry_of: str = ""
    started_at: datetime | None = None
    duration_ms: float | None = None
    input: Any = None
    output: Any = None
    error: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class LinkRecord:
    """A step's link to a business entity (input / output / affected)."""

    step_key: str
    link_type: str
    entity_type: str
    entity_id: str
    external_id: str = ""
    created_at: datetime | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class LogRecord:
    """A log line of a run, in `seq` order, optionally on one of its steps."""

    seq: int
    message: str
    level: str = "info"
    time: datetime | None = None
    step_key: str | None = None
    fields: Any = None
    # A row that repeats what an earlier one says (workflow writes each event
    # twice): kept, so nothing is lost, but hidden from the default log view.
    duplicate: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RunRecord:
    """One run and (lazily) everything under it.

    `external_id` + `origin` identify the run within its format: origin is ""
    when the source's ids are globally unique (UUIDs, trace ids, content
    hashes) and the database path when they are only unique inside one
    database.

    `fingerprint` changes exactly when the run's content changes; the store
    skips a run whose fingerprint it already has without touching `steps` and
    friends, which is what makes re-syncing a big database cheap.

    `completeness` orders snapshots of one run (e.g. `(finished, step count)`):
    the store never replaces a stored run by a less complete one, so an old
    "running" copy cannot downgrade a finished run. None means "always newer".
    """

    format: str
    external_id: str
    origin: str = ""
    name: str = ""
    type: str = ""
    trigger: str = ""
    actor: str = ""
    status: str = Status.SUCCEEDED
    raw_status: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    input: Any = None
    output: Any = None
    error: str = ""
    output_counters: dict[str, float] = field(default_factory=dict)
    progress_label: str = ""
    # Run-level progress, where the source has one (e.g. workflow's step_count).
    items_total: int | None = None
    items_processed: int | None = None
    items_succeeded: int | None = None
    items_failed: int | None = None
    # The last time the source showed activity (file mtime, row updated_at):
    # a running run quiet for longer than TRACER_STALE_AFTER is shown stale.
    source_updated_at: datetime | None = None
    truncated: bool = False
    # True when started/finished are estimates (greentic: from the file's mtime).
    times_estimated: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    completeness: tuple | None = None
    steps: Iterable[StepRecord] = ()
    calls: Iterable[CallRecord] = ()
    links: Iterable[LinkRecord] = ()
    logs: Iterable[LogRecord] = ()
