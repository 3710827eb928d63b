"""Entities: every business object a step read, wrote or affected, and one
entity's page with every step that touched it, across runs."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from traces import queries
from traces.forms import EntityDetailForm, EntityListForm
from traces.pagination import BadCursor

from .common import bad_request, fragment, htmx_part

LIST_TEMPLATE = "traces/entity_list.html"
LIST_PARTS = ("entity-page", "entity-rows")
DETAIL_TEMPLATE = "traces/entity_detail.html"
DETAIL_PARTS = ("entity-links", "entity-subjects")


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def entity_list(request: HttpRequest) -> HttpResponse:
    form = EntityListForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some filters are not valid.", form)
    data = form.cleaned_data
    part = htmx_part(request, *LIST_PARTS)
    try:
        page = queries.entities.entity_page(data)
    except BadCursor as exc:
        return bad_request(request, str(exc), form)
    types = queries.entities.entity_type_counts() if part != "entity-rows" else []
    context = {
        "section": "entities",
        "form": form,
        "page": page,
        "types": types,
        "selected_type": data["type"],
        "references": sum(entry["total"] for entry in types),
    }
    return render(request, fragment(request, LIST_TEMPLATE, *LIST_PARTS), context)


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def entity_detail(request: HttpRequest, entity_type: str, entity_id: str) -> HttpResponse:
    form = EntityDetailForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some page cursors are not valid.", form)
    data = form.cleaned_data
    part = htmx_part(request, *DETAIL_PARTS)
    context = {"section": "entities", "entity_type": entity_type, "entity_id": entity_id}
    if part is None:
        summary = queries.entities.entity_summary(entity_type, entity_id)
        if not summary.exists:
            return render(request, DETAIL_TEMPLATE, {**context, "missing": True}, status=404)
        context["summary"] = summary
    try:
        if part in (None, "entity-links"):
            context["links"] = queries.entities.links_page(entity_type, entity_id, data)
        if part == "entity-subjects" or (part is None and context["summary"].subjects):
            context["subjects"] = queries.entities.subjects_page(entity_type, entity_id, data)
    except BadCursor as exc:
        return bad_request(request, str(exc), form)
    return render(request, fragment(request, DETAIL_TEMPLATE, *DETAIL_PARTS), context)
