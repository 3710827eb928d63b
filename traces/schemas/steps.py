"""The API's JSON shapes: steps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Schema
from pydantic import Field

from traces.queries.entities import LINK_VERBS
from traces.queries.timeline import ms_between

from .common import (
    JsonObject,
    Progress,
    RunRef,
    StepRef,
    _progress,
)

# --- what hangs off a step: calls, links, log rows ------------------------------------------


class CallOut(Schema):
    id: int
    key: str
    position: int
    tool: str
    operation: str
    status: str
    raw_status: str
    attempt: int | None
    retry_of: str
    started_at: datetime | None
    duration_ms: float | None
    input: Any = None
    output: Any = None
    error: str
    attributes: JsonObject


class LinkOut(Schema):
    """A link between a step and an entity: in a step's answer and an entity's."""

    id: int
    link_type: str
    verb: str = Field(description="read, written, affected, or the link type itself.")
    entity_type: str
    entity_id: str
    external_id: str
    created_at: datetime | None
    when: datetime | None = Field(description="Its created_at, else its step's or run's start.")
    attributes: JsonObject
    step: StepRef
    step_status: str
    run: RunRef

    @staticmethod
    def resolve_verb(link) -> str:
        return LINK_VERBS.get(link.link_type, link.link_type)

    @staticmethod
    def resolve_when(link) -> datetime | None:
        return link.created_at or link.step.started_at or link.run.started_at

    @staticmethod
    def resolve_step_status(link) -> str:
        return link.step.status


class LogRow(Schema):
    """A line of a run's log: in the run's log and in its step's answer."""

    id: int
    seq: int
    time: datetime | None
    level: str
    message: str
    fields: Any = None
    attributes: JsonObject = Field(
        description="What else the source says of the line (workflow: the event's data and "
        "precise time)."
    )
    duplicate: bool
    step_id: int | None
    step_key: str | None
    step_name: str | None

    @staticmethod
    def resolve_step_key(entry) -> str | None:
        return entry.step.key if entry.step_id else None

    @staticmethod
    def resolve_step_name(entry) -> str | None:
        return entry.step.name if entry.step_id else None


# --- steps ---------------------------------------------------------------------------------


class StepItem(StepRef):
    """A step in every list: a run's steps, steps across runs, an entity's subject
    steps; /api/steps/{id} adds to it (StepDetail)."""

    # The row queries (queries.steps.step_rows and step_list_columns) load these
    # columns and annotate parent_key, error_head and error_length. The step lists
    # answer with plain dicts of this shape (api.items), which tests validate here.
    run: RunRef
    parent_id: int | None
    parent_key: str | None
    seq: int
    position: int
    depth: int
    type: str
    status: str
    raw_status: str
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    attempt: int | None
    retries: int | None
    retry_of: str
    loop_index: int | None
    progress: Progress | None
    entity_type: str
    entity_id: str
    truncated: bool
    never_closed: bool
    synthetic: bool
    child_count: int
    failed_subtree: bool
    call_count: int
    link_count: int
    error: str = Field(
        description="The error's head in a list: its first 200 characters in a run's steps, "
        "2,000 across runs; all of it in /api/steps/{id}."
    )
    error_truncated: bool = Field(description="`error` is the head of a longer message.")

    resolve_progress = staticmethod(_progress)

    @staticmethod
    def resolve_error(step) -> str:
        head = getattr(step, "error_head", None)
        return step.error if head is None else head

    @staticmethod
    def resolve_error_truncated(step) -> bool:
        head = getattr(step, "error_head", None)
        return head is not None and step.error_length > len(head)


class StepDetail(StepItem):
    """One step: StepItem, with its values, its ancestors and its first calls, links
    and log rows."""

    # The lists and ancestors are given to the step by api.steps.with_panel.
    ancestors: list[StepRef] = Field(description="Root first.")
    offset_ms: float | None = Field(description="Start, in ms after the run's start.")
    max_retries: int | None
    input: Any = None
    output: Any = None
    attributes: JsonObject
    calls: list[CallOut] = Field(alias="panel_calls")
    calls_more: int = Field(description="Calls not listed (the list stops at 200).")
    links: list[LinkOut] = Field(alias="panel_links")
    links_more: int
    logs: list[LogRow] = Field(
        alias="panel_logs", description="The step's log (no repeated rows), at most 200."
    )
    logs_limited: bool

    @staticmethod
    def resolve_parent_key(step) -> str | None:
        return step.ancestors[-1].key if step.ancestors else None

    @staticmethod
    def resolve_offset_ms(step) -> float | None:
        return ms_between(step.run.started_at, step.started_at)

    @staticmethod
    def resolve_calls_more(step) -> int:
        return max(step.call_count - len(step.panel_calls), 0)

    @staticmethod
    def resolve_links_more(step) -> int:
        return max(step.link_count - len(step.panel_links), 0)


class RunSteps(Schema):
    run_id: int
    parent: str | None = Field(
        description="The parent key when listing one level (`?parent=`), else null."
    )
    items: list[StepItem]
    next: str | None
    prev: str | None
    # Find in run (`?find=`); null without one.
    find: str | None = Field(
        default=None, description="The find (`?find=`): items are its matches, in run order."
    )
    count: int | None = Field(
        default=None, description="With a find: how many steps match (up to 10,000)."
    )
    count_capped: bool | None = Field(
        default=None, description="With a find: more steps match than `count`."
    )
    ancestors: list[StepItem] | None = Field(
        default=None,
        description="With a find: the ancestors of this page's matches, each once, in run "
        "order (with `parent_id`, the tree down to every match).",
    )


class TimelineRow(Schema):
    id: int
    key: str
    parent_id: int | None
    seq: int
    depth: int
    name: str
    type: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    offset_ms: float | None = Field(description="Start, in ms from the start of the axis.")
    duration_ms: float | None
    url: str | None


class Timeline(Schema):
    run_id: int
    timed: bool = Field(
        description="Steps carry start times; if not, they are laid end to end by duration."
    )
    start: datetime | None = Field(description="Start of the axis (the run's start).")
    span_ms: float = Field(description="Length of the axis in ms.")
    items: list[TimelineRow]
    next: str | None
    prev: str | None


class RunLogs(Schema):
    run_id: int
    levels: list[str] = Field(description="Levels present in the run's log.")
    items: list[LogRow]
    next: str | None
    prev: str | None


class StepList(Schema):
    count: int = Field(description="Matching steps, counted up to 10,000.")
    count_capped: bool = Field(description="There are more than `count`.")
    items: list[StepItem]
    next: str | None
    prev: str | None


class SparkPoint(Schema):
    at: datetime
    n: int


class ErrorGroupOut(Schema):
    text: str = Field(description="The normalised message: the group's name.")
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    example: str = Field(description="The newest raw message of the cause (top 20 groups only).")
    spark: list[SparkPoint] = Field(
        description="Counts per day, week, month or year (top 20 groups only)."
    )
    steps: str = Field(description="The API URL of the group's failed steps.")


class ErrorGroupsOut(Schema):
    groups: list[ErrorGroupOut]
    steps_read: int = Field(description="The failed steps grouped: every one matching.")
    from_read_model: bool = Field(
        description="Read from the per-day counts kept at ingest (format, run type and "
        "whole UTC days filter them); otherwise grouped over the matching failed steps."
    )
    spark_unit: str
