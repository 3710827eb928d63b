"""The step panel beside the run page's tabs (a step's values, calls, entity links and
log) and the value blocks it shares with the tabs: JSON pretty-printed, long values
cut with a link that shows them all."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest
from django.urls import reverse
from django.utils.text import slugify

from traces import queries
from traces.models import Run, Status, Step
from traces.templatetags.traces_extras import pretty_json

from .common import LEVEL_CLASSES, entity_url, step_url

# Longer values are cut here, with a "show all" link (?full=<name>): never silently.
VALUE_LIMIT = 20_000
# Why a step flagged `io_captured: false` has no input/output, by format.
NOT_CAPTURED = {
    "workflow": "The request had no X-Workflow-Trace: true header, so the server did not "
    "record its steps' input and output.",
}


def panel_context(request: HttpRequest, step: Step, chain: list[Step], form) -> dict:
    run_id = step.run_id
    full = set(form.cleaned_data["full"])
    calls = queries.steps.step_calls(step) if step.call_count else []
    for call in calls:
        call.values = _call_values(request, call, full)
    links = queries.steps.step_links(step) if step.link_count else []
    for link in links:
        link.url = entity_url(link.entity_type, link.entity_id)
    logs = queries.steps.step_logs(step)
    for entry in logs:
        entry.level_class = LEVEL_CLASSES.get(entry.level.lower(), "flag")
    attributes = dict(step.attributes or {})
    truncated_fields = attributes.get("truncated_fields") or []
    values = [
        value_block(request, "step-input", step.input, "Input", full, "input"),
        value_block(request, "step-output", step.output, "Output", full, "output"),
    ]
    not_captured = ""
    if attributes.get("io_captured") is False:
        not_captured = NOT_CAPTURED.get(step.run.format, "The source did not record them.")
        for block in values:
            if not block["present"]:
                block["absent"] = "not captured"
    return {
        "step": step,
        "ancestors": [(a, step_url(run_id, a.key)) for a in chain],
        "url": step_url(run_id, step.key),
        "close_url": reverse("traces:run-detail", args=[run_id])
        + (f"?tab={form.cleaned_data['tab']}" if form.cleaned_data["tab"] else ""),
        "retry_of_url": step_url(run_id, step.retry_of) if step.retry_of else "",
        "entity_url": entity_url(step.entity_type, step.entity_id),
        "progress": _progress(step, step.run),
        "offset_ms": queries.timeline.ms_between(step.run.started_at, step.started_at),
        "values": values,
        "not_captured": not_captured,
        "error": value_block(request, "step-error", step.error or None, "Error", full, "error"),
        "truncated_fields": truncated_fields if isinstance(truncated_fields, list) else [],
        "attributes": [
            _attribute(request, index, name, value, full)
            for index, (name, value) in enumerate(attributes.items())
            if name not in ("truncated_fields", "io_captured")  # said above the attributes
        ],
        "calls": calls,
        "calls_more": max(step.call_count - len(calls), 0),
        "links": links,
        "links_more": max(step.link_count - len(links), 0),
        "logs": logs,
        "logs_url": f"{reverse('traces:run-logs', args=[run_id])}?{urlencode({'step': step.key})}",
        "logs_limited": len(logs) >= queries.steps.PANEL_LIMIT,
    }


def _call_values(request: HttpRequest, call, full: set) -> list[dict]:
    """A call's input, output and attributes, each cut like a step's ("show all" = calls)."""
    named = (
        ("in", call.input, "input"),
        ("out", call.output, "output"),
        ("attr", call.attributes or None, "attributes"),
    )
    blocks = [
        value_block(request, f"call-{call.pk}-{suffix}", value, label, full, "calls")
        for suffix, value, label in named
    ]
    return [block for block in blocks if block["present"]]


def _attribute(request: HttpRequest, index: int, name: str, value, full: set) -> dict:
    if isinstance(value, dict | list):
        dom_id = f"step-attr-{index}-{slugify(name)}"
        block = value_block(request, dom_id, value, name, full, "attributes")
        return {"name": name, "block": block}
    return {"name": name, "text": "" if value is None else str(value)}


def _progress(step: Step, run: Run) -> dict | None:
    if not step.has_progress:
        return None
    processed = step.items_processed or 0
    info = {"processed": processed, "total": step.items_total, "rate": None, "eta_ms": None}
    # A stale run's clock stopped at its last write: its rate is measured until then,
    # and it has no time left to estimate.
    until = run.live_until
    if step.status == Status.RUNNING and step.started_at and processed and until:
        elapsed_s = (until - step.started_at).total_seconds()
        if elapsed_s > 0:
            info["rate"] = processed / elapsed_s
            if step.items_total and step.items_total > processed and not run.is_stale:
                info["eta_ms"] = (step.items_total - processed) / info["rate"] * 1000
    return info


# --- values -------------------------------------------------------------------------------


def value_block(
    request: HttpRequest,
    dom_id: str,
    value,
    label: str,
    full: set,
    full_key: str,
    limit: int = VALUE_LIMIT,
) -> dict:
    """A JSON value pretty-printed; past `limit` characters cut, with a link
    that shows it all (`?full=<full_key>`)."""
    if value is None:
        return {"present": False, "label": label, "id": dom_id}
    text = pretty_json(value)
    cut = full_key not in full and len(text) > limit
    query = request.GET.copy()
    query.setlist("full", sorted({*query.getlist("full"), full_key}))
    return {
        "present": True,
        "id": dom_id,
        "label": label,
        "text": text[:limit] if cut else text,
        "size": len(text),
        "cut": cut,
        "limit": limit,
        "full_url": f"{request.path}?{query.urlencode()}",
    }
