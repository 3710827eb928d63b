"""The step lists of the API answer with plain dicts built in traces/api/items.py, not
through their Schemas: the JSON must be the very answer the Schemas give for the same
rows (the bytes), and valid against them (the OpenAPI document says so)."""

import json
import os
import shutil
from urllib.parse import urlencode

import jsonschema_rs
import pytest
from django.urls import reverse

from tests.factories import make_runs, make_steps
from tracer_site.api import api
from traces import queries
from traces.ingest.loader import ingest_paths
from traces.models import Run, Step
from traces.schemas import (
    ErrorGroupOut,
    ErrorGroupsOut,
    RunSteps,
    SearchOut,
    StepList,
    Timeline,
    TimelineRow,
)

pytestmark = pytest.mark.django_db

FILE_TIME_NS = 1_764_000_000_123_000_000


def through_schema(schema, data) -> bytes:
    """What ninja answered before api.items: `data` (model rows inside) validated by
    `schema` and rendered."""
    dumped = schema.model_validate(data).model_dump()
    return api.renderer.render(None, dumped, response_status=200).encode()


def conforms(schema, body: bytes) -> bool:
    """The answer is valid against the OpenAPI document's schema of its Schema."""
    document = api.get_openapi_schema()
    validator = jsonschema_rs.validator_for(
        {"$ref": f"#/components/schemas/{schema.__name__}", "components": document["components"]}
    )
    validator.validate(json.loads(body))
    return True


def run_steps_by_schema(run: Run, page, parent=None) -> bytes:
    for step in page.items:
        step.run = run
    data = {"run_id": run.pk, "parent": parent, "items": page.items}
    return through_schema(RunSteps, {**data, "next": page.next_cursor, "prev": page.prev_cursor})


def odd_run() -> Run:
    """A run whose steps hold every case an item builds differently: progress, a long
    error (cut), no times, a key no URL can carry, hostile text, an integral duration."""
    run = make_runs(1, name='<img src=x onerror="1">', type="")[0]
    steps = make_steps(run, 4, status="failed", error=lambda i: "x" * (150 * i) + "<b>&")
    Step.objects.filter(pk=steps[0].pk).update(
        items_total=10, items_processed=4, items_failed=1, name="<script>", type='"t"'
    )
    Step.objects.filter(pk=steps[1].pk).update(
        started_at=None, finished_at=None, duration_ms=None, key="a\nb", attempt=2, retries=1
    )
    Step.objects.filter(pk=steps[2].pk).update(duration_ms=7, loop_index=3, entity_type="o")
    make_steps(run, 2, parent=steps[3], start=4)
    return run


@pytest.fixture
def runs(samples, tmp_path):
    """The samples, dated in whole milliseconds: a greentic run's times come from its file's
    mtime (a checkout's, to the µs), and a failure at 12:00:00.000500 answers
    "12:00:00.000Z", which reads back as 12:00:00 and renders "12:00:00Z"."""
    copy = shutil.copytree(samples, tmp_path / "samples")
    for path in copy.rglob("*"):
        os.utime(path, ns=(FILE_TIME_NS, FILE_TIME_NS))
    report = ingest_paths([copy])
    assert report.failed == []
    return [*Run.objects.order_by("pk"), odd_run()]


def test_a_runs_flat_steps_are_what_the_schema_answers(client, runs):
    checked = 0
    for run in runs:
        for params in ({}, {"failed": "1"}):
            url = reverse("api:run_steps", args=[run.pk])
            body = client.get(url, params).content
            page = queries.timeline.timeline_window(run.pk, failed_only=bool(params))
            assert body == run_steps_by_schema(run, page)
            assert conforms(RunSteps, body)
            checked += len(page.items)
    assert checked > 100


def test_a_tree_level_is_what_the_schema_answers(client, runs):
    for run in runs:
        url = reverse("api:run_steps", args=[run.pk])
        roots = queries.steps.tree_level(run.pk, None)
        body = client.get(url, {"parent": ""}).content
        assert body == run_steps_by_schema(run, roots)
        for root in roots.items[:3]:
            level = queries.steps.tree_level(run.pk, root.pk)
            body = client.get(url, {"parent": root.key}).content
            assert body == run_steps_by_schema(run, level, parent=root.key)
            assert conforms(RunSteps, body)


@pytest.mark.parametrize("params", [{}, {"status": "failed"}, {"status": "succeeded"}])
def test_steps_across_runs_are_what_the_schema_answers(client, runs, params):
    body = client.get(reverse("api:list_steps"), params).content
    steps = queries.steps.filter_steps({"status": params.get("status", "")})
    page = queries.steps.steps_page(steps, {"status": params.get("status", "")})
    count, capped = queries.steps.capped_count(steps)
    data = {"count": count, "count_capped": capped, "items": page.items}
    assert page.items
    assert body == through_schema(StepList, {**data, "next": page.next_cursor, "prev": None})
    assert conforms(StepList, body)


def test_the_odd_values_come_back_as_the_schema_gives_them(client, runs):
    run = runs[-1]
    items = client.get(reverse("api:run_steps", args=[run.pk])).json()["items"]
    by_name = {item["name"]: item for item in items}
    assert by_name["<script>"]["progress"] == {
        "label": "", "total": 10, "processed": 4, "succeeded": None, "failed": 1,
    }  # fmt: skip
    unlinked = next(item for item in items if item["key"] == "a\nb")
    assert unlinked["url"] is None and unlinked["started_at"] is None
    assert by_name["step 2"]["duration_ms"] == 7.0
    assert [item["error_truncated"] for item in items[:4]] == [False, False, True, True]
    assert items[0]["run"]["name"] == '<img src=x onerror="1">'
    assert items[0]["run"]["url"] == reverse("traces:run-detail", args=[run.pk])


@pytest.mark.parametrize("params", [{}, {"format": "runs"}, {"name": "step", "run_type": "x&y"}])
def test_error_groups_are_what_the_schema_answers(client, runs, params):
    body = client.get(reverse("api:step_errors"), params).content
    assert body == through_schema(ErrorGroupsOut, json.loads(body))
    assert conforms(ErrorGroupsOut, body)
    groups = json.loads(body)["groups"]
    if params.get("run_type"):
        return
    assert groups and any(group["spark"] for group in groups)
    steps_url = reverse("api:list_steps") + "?" + urlencode({**params, "status": "failed"})
    for group in groups:
        assert group["steps"] == f"{steps_url}&{urlencode({'error_group': group['text']})}"
        assert list(group) == list(ErrorGroupOut.model_fields)


def test_a_timeline_is_what_the_schema_answers(client, runs):
    untimed = 0
    for run in runs:
        for params in ({}, {"failed": "1"}):
            body = client.get(reverse("api:run_timeline", args=[run.pk]), params).content
            assert body == through_schema(Timeline, json.loads(body))
            assert conforms(Timeline, body)
            answer = json.loads(body)
            untimed += not answer["timed"] and bool(answer["items"])
            assert all(list(row) == list(TimelineRow.model_fields) for row in answer["items"])
    assert untimed  # greentic's steps have no times: laid end to end


def test_a_search_is_what_the_schema_answers(client, runs):
    """The search's steps as plain dicts, its runs and entities through their Schemas:
    the answer the whole SearchOut gave."""
    from traces.search.query import kind_of, search, url_of

    odd = runs[-1]
    queries_ = ["sync_stripe", "account:acc_main", "img", "failed", odd.external_id, "zzqqxxy"]
    seen = {"runs": 0, "steps": 0, "entities": 0}
    for query in queries_:
        body = client.get("/api/search", {"q": query}).content
        results = search(query)
        kinds = ("runs", "steps", "entities")
        exact = results.exact
        data = {
            "query": query,
            **{kind: getattr(results, kind).items for kind in kinds},
            "counts": {kind: getattr(results, kind).count for kind in kinds},
            "capped": {kind: int(getattr(results, kind).capped) for kind in kinds},
            "exact": {"kind": kind_of(exact), "url": url_of(exact)} if exact else None,
            "exact_matches": [
                {"kind": kind_of(found), "url": url_of(found)} for found in results.exact_matches
            ],
        }
        assert body == through_schema(SearchOut, data), query
        assert conforms(SearchOut, body)
        for kind in kinds:
            seen[kind] += len(data[kind])
    assert all(seen.values()), seen
