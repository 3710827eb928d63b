"""The search: runs, steps and entities by what a person pastes."""

from __future__ import annotations

from ninja import Query, Router

from traces.forms import LogSearchForm, SearchForm
from traces.schemas import EntityItem, LogSearch, RunItem, SearchOut, form_query
from traces.search.logs import search_logs
from traces.search.query import kind_of, search, url_of

from . import items as items_of
from .common import READ, valid

router = Router()

SearchQuery = form_query("SearchQuery", SearchForm, only=("q",))


@router.get("/search", response={200: SearchOut, **READ}, tags=["search"], summary="Search")
def search_everything(request, filters: Query[SearchQuery]):
    """Runs and steps whose ids, names, types, actors, triggers, errors or attribute
    values hold every word of `q` (each word as a whole token sequence:
    `cus_000123`, `erin@acme.io`), and entities whose id starts with `q` (or
    `type:id`) or whose external id is `q`."""
    query = valid(SearchForm, request.GET).cleaned_data["q"].strip()
    results = search(query)
    kinds = ("runs", "steps", "entities")
    exact = results.exact
    # The steps as plain dicts (api.items: through StepItem, 20 steps cost ~4 ms of
    # attribute reads and validation); runs and entities through their Schemas.
    body = {
        "query": query,
        "runs": [_dumped(RunItem, run) for run in results.runs.items],
        "steps": items_of.step_items(results.steps.items),
        "entities": [_dumped(EntityItem, entity) for entity in results.entities.items],
        "counts": {kind: getattr(results, kind).count for kind in kinds},
        "capped": {kind: int(getattr(results, kind).capped) for kind in kinds},
        "exact": {"kind": kind_of(exact), "url": url_of(exact)} if exact else None,
        "exact_matches": [
            {"kind": kind_of(found), "url": url_of(found)} for found in results.exact_matches
        ],
    }
    return items_of.answer(request, body)


def _dumped(schema, row) -> dict:
    return schema.model_validate(row).model_dump()


LogSearchQuery = form_query("LogSearchQuery", LogSearchForm)


@router.get("/logs", response={200: LogSearch, **READ}, tags=["search"], summary="Log lines")
def search_log_lines(request, filters: Query[LogSearchQuery]):
    """Log lines of every run holding every word of `q` (without words: the newest
    lines), newest first, 50 at a time (`before` = the previous answer's `older`),
    narrowed by level, step name, format, run type and time (`since`/`until`: ISO
    times or 1h, 24h, 7d ...)."""
    data = valid(LogSearchForm, request.GET).cleaned_data
    query = data["q"].strip()
    hits = search_logs(query, data)
    return {
        "query": query,
        "items": hits.items,
        "count": hits.count,
        "capped": hits.capped,
        "older": hits.older,
    }
