"""One search for everything (/search/?q=): runs, steps and entities, grouped;
and log lines across runs (/logs/?q=; without words, the newest lines)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from traces.forms import LogSearchForm, SearchForm
from traces.search.logs import PAGE as LOG_PAGE
from traces.search.logs import search_logs
from traces.search.query import COUNT_CAP, SHOWN, search, url_of, words_of
from traces.templatetags.traces_extras import filter_count

from .common import bad_request, mark_log_rows


@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "The search is not valid.", form)
    query = form.cleaned_data["q"].strip()
    results = search(query) if query else None
    jump = form.cleaned_data["jump"] != "no"
    if results is not None and results.exact is not None and jump and url_of(results.exact):
        return redirect(url_of(results.exact))
    context = {
        "section": "search",
        "form": form,
        "query": query,
        "results": results,
        "shown": SHOWN,
        "cap": COUNT_CAP,
    }
    return render(request, "traces/search.html", context)


@require_GET
def log_search(request: HttpRequest) -> HttpResponse:
    form = LogSearchForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some filters are not valid.", form)
    query = form.cleaned_data["q"].strip()
    hits = search_logs(query, form.cleaned_data)
    mark_log_rows(hits.items)
    context = {
        "section": "logs",
        "form": form,
        "query": query,
        "newest": not words_of(query),
        "filtered": filter_count(form) > (1 if query else 0),
        "hits": hits,
        "cap": COUNT_CAP,
        "page_size": LOG_PAGE,
    }
    return render(request, "traces/log_search.html", context)
