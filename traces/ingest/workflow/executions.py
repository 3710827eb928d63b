"""One RunRecord per row of `workflow_executions`: times, progress, fingerprint."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..common import duration_between, fingerprint, loads_json_or_text
from ..records import RunRecord, Status
from ..sqlite_layout import (
    Snapshot,
    as_float,
    as_int,
    as_text,
    column_set,
    extra_columns,
    jsonable,
    lenient_time,
    normalise_status,
)
from .layout import AGGREGATES, COMPENSATION, TERMINAL, Layout, as_word
from .logs import execution_logs
from .steps import MARK_TYPES, StepMarks, execution_steps, step_events

NAME = "workflow"
# Bump it when the mapping changes: the loader reads unchanged files again, and, as part
# of every fingerprint, their stored runs are rewritten.
PARSER_VERSION = 4

_EXECUTION_COLUMNS = column_set(
    "id workflow_id trigger_type trigger_data status output_data error_message triggered_by "
    "started_at completed_at duration_ms metadata"
)

_METADATA_KEYS = ("config_version", "explicit_trace", "capture_io")


def execution_record(snap: Snapshot, lay: Layout, origin: str, row: dict, extra: dict) -> RunRecord:
    attrs = _execution_attributes(lay, row, extra)
    status = _cancelled_context(normalise_status(row.get("status")), row.get("errormessage"))
    pipeline = as_text(attrs.get("pipeline"))
    execution_id = row.get("id")
    started, finished, duration = _execution_timing(row, extra, status, attrs)
    use_events = lay.events is not None and bool(extra["v.n"])
    skipped = 0
    if status not in TERMINAL:
        skipped = _skipped_while_open(snap, lay, execution_id, extra, use_events)
    return RunRecord(
        format=NAME,
        external_id=as_text(execution_id),
        origin=origin,
        name=pipeline or as_text(row.get("triggertype")),
        type=pipeline,
        trigger=as_text(row.get("triggertype")),
        actor=as_text(row.get("triggeredby")),
        status=status,
        raw_status=as_text(row.get("status")),
        started_at=started,
        finished_at=finished,
        duration_ms=duration,
        error=as_text(row.get("errormessage")),
        **_progress(extra, attrs, status, skipped),
        source_updated_at=_last_activity(row, extra),
        attributes=attrs,
        fingerprint=_execution_print(extra),
        steps=execution_steps(
            snap,
            lay,
            execution_id,
            status in TERMINAL,
            use_events,
            attrs.get("capture_io") is True,
        ),
        logs=execution_logs(snap, lay, execution_id, use_events),
    )


def _execution_attributes(lay: Layout, row: dict, extra: dict) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "workflow_id": jsonable(row.get("workflowid")),
        "metadata": loads_json_or_text(row.get("metadata"))[0],
        "trigger_data": loads_json_or_text(row.get("triggerdata"))[0],
        "output_data": loads_json_or_text(row.get("outputdata"))[0],
    }
    if isinstance(attrs["metadata"], dict):
        attrs.update({k: attrs["metadata"][k] for k in _METADATA_KEYS if k in attrs["metadata"]})
    started = _started_fields(extra)
    attrs["pipeline"] = started.get("pipeline")
    attrs["step_count"] = started.get("step_count")
    if lay.events_error:
        attrs["events_error"] = lay.events_error
    attrs.update(extra_columns(lay.executions, row, _EXECUTION_COLUMNS))
    return attrs


def _started_fields(extra: dict) -> dict:
    for source in ("started_fields", "event_start_data"):
        value, _ = loads_json_or_text(extra[source])
        if isinstance(value, dict) and value.get("pipeline"):
            return value
    return {}


# Go's context.Canceled: the engine stopped the execution (a cancel, a shutdown); the
# store says "failed", the error says it was cancelled. The raw status is kept.
_CANCELLED_CONTEXT = "context canceled"


def _cancelled_context(status: str, error) -> str:
    if status == Status.FAILED and as_text(error).rstrip().endswith(_CANCELLED_CONTEXT):
        return Status.CANCELLED
    return status


def _execution_timing(row: dict, extra: dict, status: str, attrs: dict):
    """Sub-second times from events.db when it has them. The end is the precise
    start plus the exact duration: execution.failed is written before a saga
    compensates, so its time is not the end."""
    precise_start = lenient_time(extra["event_start"], attrs, "event_start")
    started = precise_start or lenient_time(row.get("startedat"), attrs, "started_at")
    if status not in TERMINAL:
        return started, None, None
    duration = as_float(row.get("durationms"))
    finished = lenient_time(row.get("completedat"), attrs, "completed_at")
    if precise_start is not None and duration is not None:
        try:
            finished = precise_start + timedelta(milliseconds=duration)
        except OverflowError:  # a duration that ends past year 9999
            attrs.setdefault("unreadable_times", {})["finished"] = "start + duration_ms"
    elif extra["event_end"]:
        finished = lenient_time(extra["event_end"], attrs, "event_end") or finished
    if duration is None:
        duration = duration_between(started, finished)
    return started, finished, duration


def _progress(extra: dict, attrs: dict, status: str, skipped: int) -> dict[str, int | None]:
    ok, bad, still_open, ended = (
        as_int(extra[k]) or 0 for k in ("s.ok", "s.bad", "s.open", "s.ended")
    )
    # In a finished execution every step left open is resolved (skipped, cancelled);
    # in a running one, those its events already tell skipped.
    processed = ok + bad + ended + (still_open if status in TERMINAL else skipped)
    return {
        "items_total": as_int(attrs.get("step_count")),
        "items_processed": processed,
        "items_succeeded": ok,
        "items_failed": bad,
    }


def _skipped_while_open(
    snap: Snapshot, lay: Layout, eid: Any, extra: dict, use_events: bool
) -> int:
    """Steps of a running execution left open but told skipped: their records say
    skipped, so they count as processed. Matched as `execution_steps` matches, and
    only read when the execution has a skip at all (a running one is re-read often)."""
    if not as_int(extra["s.open"]):
        return 0
    conn, s = snap.check(), lay.steps
    if not step_events(conn, lay, eid, use_events, ("step.skipped",)).fetchone():
        return 0
    marks = StepMarks(step_events(conn, lay, eid, use_events, MARK_TYPES))
    sql = (
        f"SELECT {s.col('step_name', 's')}, {s.col('step_type', 's')}, w.status "
        f"FROM {s.sql} s LEFT JOIN temp.tracer_wf_status w ON w.word IS {as_word(s, 's')} "
        f"WHERE {s.col('execution_id', 's')} = ? "
        f"ORDER BY {s.col('sequence_num', 's')}, {s.col('id', 's')}"
    )
    skipped = 0
    for name, step_type, status in conn.execute(sql, (eid,)):
        mark = marks.take(as_text(name))
        normal = as_text(step_type) != COMPENSATION
        skipped += normal and status in (Status.RUNNING, Status.PENDING) and mark.skipped
    return skipped


def _last_activity(row: dict, extra: dict) -> datetime | None:
    values = (row.get("completedat"), row.get("startedat"), extra["l.at"], extra["v.at"])
    times = [t for t in (lenient_time(v, {}, "") for v in values) if t is not None]
    return max(times, default=None)


def _execution_print(extra: dict) -> str:
    aggregates = [extra[name] for name in AGGREGATES]
    return fingerprint(PARSER_VERSION, extra["row"], aggregates)
