"""The API's JSON shapes: common."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.urls import NoReverseMatch, reverse
from ninja import Schema
from pydantic import BeforeValidator, Field

from traces.key_urls import key_url

# --- common ------------------------------------------------------------------------------


def _or_empty(value):
    return value or {}


# A JSON object column that may hold null: always an object in the answer.
JsonObject = Annotated[dict[str, Any], BeforeValidator(_or_empty)]


def page_url(name: str, *args) -> str | None:
    """A page's URL, or None when a key cannot be carried by one."""
    try:
        return reverse(name, args=list(args))
    except NoReverseMatch:
        return None


def step_url(run_id: int, key: str) -> str | None:
    return key_url("traces:step-detail", run_id, key) or None


def _progress(item):
    return item if item.has_progress else None


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, for a person to read.")
    errors: dict[str, list[str]] | None = Field(
        None, description="Per-parameter messages, when a parameter or the body is not valid."
    )


class Progress(Schema):
    """Items processed, for a run or a step that counts them."""

    label: str = Field("", alias="progress_label")
    total: int | None = Field(alias="items_total")
    processed: int | None = Field(alias="items_processed")
    succeeded: int | None = Field(alias="items_succeeded")
    failed: int | None = Field(alias="items_failed")


class StepCounts(Schema):
    """The run's steps by status (counted at ingest)."""

    total: int = Field(
        alias="step_count", description="Steps of the run (synthetic grouping steps not counted)."
    )
    pending: int = Field(alias="steps_pending")
    running: int = Field(alias="steps_running")
    succeeded: int = Field(alias="steps_succeeded")
    failed: int = Field(alias="steps_failed")
    skipped: int = Field(alias="steps_skipped")
    cancelled: int = Field(alias="steps_cancelled")
    items_failed: int = Field(
        alias="steps_items_failed",
        description="Items that failed inside its steps, whatever the steps' own status.",
    )


# --- references: the first fields of a run's and a step's shape ----------------------------


class RunRef(Schema):
    """A run as another object names it: the first fields of RunItem."""

    id: int
    name: str
    external_id: str
    format: str
    type: str
    status: str
    started_at: datetime | None
    url: str = Field(alias="get_absolute_url", description="The run's page.")


class StepRef(Schema):
    """A step as another object names it: the first fields of StepItem."""

    id: int
    key: str = Field(description="Stable across re-ingests; the step's page uses it.")
    name: str
    url: str | None = Field(description="The step's page.")

    @staticmethod
    def resolve_url(step) -> str | None:
        return step_url(step.run_id, step.key)
