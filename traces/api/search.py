"""The search: runs, steps and entities by what a person pastes."""

from __future__ import annotations

from ninja import Query, Router

from traces.forms import SearchForm
from traces.schemas import SearchOut, form_query
from traces.search.query import kind_of, search, url_of

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
    return {
        "query": query,
        "runs": results.runs.items,
        "steps": results.steps.items,
        "entities": results.entities.items,
        "counts": {kind: getattr(results, kind).count for kind in kinds},
        "capped": {kind: int(getattr(results, kind).capped) for kind in kinds},
        "exact": {"kind": kind_of(exact), "url": url_of(exact)} if exact else None,
    }
