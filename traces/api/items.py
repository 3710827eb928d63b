"""The API's long lists as plain dicts, answered without validating each item.

Through its Schema an answer is read field by field by ninja's DjangoGetter and
validated by pydantic: for the 300 steps of a run's flat list, ~12,600 attribute
reads and ~45 ms of a request whose SQL takes 2 ms. The step lists build their items
here instead, field for field (names, order and values) what StepItem gives, and
answer with the API's own renderer; so do the timeline's rows and the failure causes
with their sparklines (api.runs, api.steps). The endpoints still declare their
Schemas, which the OpenAPI document is made from; tests/test_api_items.py compares
these answers with what the Schemas make of the same rows, and validates them
against the document.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.urls import reverse

from traces.key_urls import key_url
from traces.models import Run, Step
from traces.pagination import Page


def answer(request, data: dict) -> HttpResponse:
    """A 200 with `data` as JSON, rendered as ninja renders a validated answer."""
    from tracer_site.api import api  # the NinjaAPI imports this package

    return api.create_response(request, data, status=200)


def run_ref(run: Run) -> dict:
    """A RunRef."""
    return {
        "id": run.pk,
        "name": run.name,
        "external_id": run.external_id,
        "format": run.format,
        "type": run.type,
        "status": run.status,
        "started_at": run.started_at,
        "url": reverse("traces:run-detail", args=[run.pk]),
    }


def step_items(steps: list[Step], run: Run | None = None) -> list[dict]:
    """StepItems of rows read by queries.steps.step_rows or step_list_columns: of `run`
    when given (a run's own list), else each of its own run (one RunRef per run)."""
    refs: dict[int, dict] = {}
    if run is not None:
        refs[run.pk] = run_ref(run)
    items = []
    for step in steps:
        ref = refs.get(step.run_id)
        if ref is None:
            ref = refs[step.run_id] = run_ref(step.run)
        items.append(step_item(step, ref))
    return items


def step_item(step: Step, run: dict) -> dict:
    """A StepItem (its fields in the Schema's order), given its run's RunRef."""
    head = getattr(step, "error_head", None)
    return {
        "id": step.pk,
        "key": step.key,
        "name": step.name,
        "url": key_url("traces:step-detail", step.run_id, step.key) or None,
        "run": run,
        "parent_id": step.parent_id,
        "parent_key": getattr(step, "parent_key", None),
        "seq": step.seq,
        "position": step.position,
        "depth": step.depth,
        "type": step.type,
        "status": step.status,
        "raw_status": step.raw_status,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "duration_ms": as_float(step.duration_ms),
        "attempt": step.attempt,
        "retries": step.retries,
        "retry_of": step.retry_of,
        "loop_index": step.loop_index,
        "progress": _progress(step),
        "entity_type": step.entity_type,
        "entity_id": step.entity_id,
        "truncated": step.truncated,
        "never_closed": step.never_closed,
        "synthetic": step.synthetic,
        "child_count": step.child_count,
        "failed_subtree": step.failed_subtree,
        "call_count": step.call_count,
        "link_count": step.link_count,
        "error": step.error if head is None else head,
        "error_truncated": head is not None and step.error_length > len(head),
    }


def _progress(step: Step) -> dict | None:
    if not step.has_progress:
        return None
    return {
        "label": "",  # a step has no progress label (a run has)
        "total": step.items_total,
        "processed": step.items_processed,
        "succeeded": step.items_succeeded,
        "failed": step.items_failed,
    }


def as_float(value: float | None) -> float | None:
    """A number a Schema declares a float (pydantic would make 7 into 7.0)."""
    return float(value) if value is not None else None


def page_of(page: Page, items: list[dict]) -> dict:
    """A list's items with its cursors."""
    return {"items": items, "next": page.next_cursor, "prev": page.prev_cursor}
