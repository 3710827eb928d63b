"""Keyset page cursors (traces/pagination.py): a cursor that does not fit its list
is a 400 asking to start again from the first page, on every paged list."""

import base64
import json

import pytest

from tests.factories import count_entities, make_runs, make_steps
from traces.forms import RunFilterForm
from traces.models import EntityLink, LogEntry, Run, TraceFile, TraceSource
from traces.pagination import encode_cursor

pytestmark = pytest.mark.django_db

START_AGAIN = "start again from the first page"
WHEN = {"dt": "2024-01-01T00:00:00+00:00"}

# What no list's cursor may hold, whatever it sorts by...
ANY_LIST = [
    [1],
    {"what": 1},
    {"dt": "2024-13-01T00:00:00"},  # parse_datetime raises (the cursor of issue 11)
    {"dt": "0001-01-01T00:00:00+01:00"},  # before the year 1 in UTC
    2**64,
]
# ...what a sort on a field of this kind may not hold...
WRONG = {
    "datetime": ["x", 12.5, 7, {"dt": "2024-01-01T00:00:00"}],  # the last one is naive
    "float": ["x", WHEN, True, float("nan"), float("inf")],
    "int": ["x", 1.5, WHEN, True],
    "text": [7, WHEN, "a\x00b"],
}
# ...and ids no row has.
BAD_IDS = [None, "1", 1.0, True, 2**64, -(2**64)]
GOOD_VALUE = {"datetime": WHEN, "float": 1.0, "int": 1, "text": "a"}

# (name, URL, query, cursor parameters, the sort field's kind, whether it can be NULL)
LISTS = [
    ("runs", "/", {}, "after before", "datetime", True),
    ("runs by duration", "/", {"sort": "-duration"}, "after before", "float", True),
    ("runs by steps", "/", {"sort": "-steps"}, "after before", "int", False),
    ("runs by name", "/", {"sort": "name"}, "after before", "text", False),
    ("steps", "/steps/", {}, "after before", "datetime", True),
    ("failed steps", "/steps/", {"status": "failed"}, "after before", "datetime", True),
    ("entity", "/entities/order/o-1/", {}, "after before subject_after subject_before",
     "datetime", True),
    ("files", "/files/", {}, "after before", "datetime", False),
    ("source files", "/sources/{source}/", {}, "after before", "datetime", False),
    ("tree", "/runs/{run}/", {}, "after", "int", False),
    ("failed tree", "/runs/{run}/", {"failed": "1"}, "after", "int", False),
    ("timeline", "/runs/{run}/timeline/", {}, "after before", "datetime", True),
    ("logs", "/runs/{run}/logs/", {}, "after before", "int", False),
    ("children", "/runs/{run}/children/s.0/", {"htmx": "1"}, "after", "int", False),
    ("api runs", "/api/runs", {}, "after before", "datetime", True),
    ("api runs by duration", "/api/runs", {"sort": "duration"}, "after before", "float", True),
    ("api runs by name", "/api/runs", {"sort": "name"}, "after before", "text", False),
    ("api run steps", "/api/runs/{run}/steps", {}, "after before", "int", False),
    ("api run roots", "/api/runs/{run}/steps", {"parent": ""}, "after", "int", False),
    ("api timeline", "/api/runs/{run}/timeline", {}, "after before", "int", False),
    ("api logs", "/api/runs/{run}/logs", {}, "after before", "int", False),
    ("api steps", "/api/steps", {}, "after before", "datetime", True),
    ("api failed steps", "/api/steps", {"status": "failed"}, "after", "datetime", True),
    ("api entity steps", "/api/entities/order/o-1/steps", {},
     "after before subject_after subject_before", "datetime", True),
    ("api files", "/api/files", {}, "after before", "datetime", False),
]  # fmt: skip


def bad_cursors(kind: str, nullable: bool) -> list[str]:
    values = ANY_LIST + WRONG[kind] + ([] if nullable else [None])
    return [encode_cursor(value, 1) for value in values] + [
        encode_cursor(GOOD_VALUE[kind], pk) for pk in BAD_IDS
    ]


def decoded(cursor: str):
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


@pytest.fixture
def world() -> dict:
    """Something on every paged list: a run with steps (one a parent) and a log line,
    an entity with a link and a subject step, a source with a file."""
    run = make_runs(1)[0]
    first, second = make_steps(run, 2)
    make_steps(run, 1, parent=first, start=2)
    second.entity_type, second.entity_id = "order", "o-1"
    second.save()
    LogEntry.objects.create(run=run, step=first, seq=1, level="info", message="hello")
    EntityLink.objects.create(
        step=first, run=run, link_type="input", entity_type="order", entity_id="o-1"
    )
    count_entities()
    source = TraceSource.objects.create(path="/nowhere/traces")
    TraceFile.objects.create(path="/nowhere/traces/a.json", display_name="a.json", source=source)
    return {"run": run.pk, "source": source.pk}


@pytest.mark.parametrize(
    ("url", "query", "params", "kind", "nullable"),
    [pytest.param(*case[1:], id=case[0]) for case in LISTS],
)
def test_a_cursor_that_does_not_fit_the_list_is_a_400(
    client, world, url, query, params, kind, nullable
):
    url = url.format(**world)
    query = dict(query)
    headers = {"HX-Request": "true"} if query.pop("htmx", None) else {}
    assert client.get(url, query, headers=headers).status_code == 200
    for param in params.split():
        for cursor in bad_cursors(kind, nullable):
            response = client.get(url, {**query, param: cursor}, headers=headers)
            what = f"{param}={decoded(cursor)!r}"
            assert response.status_code == 400, what
            assert START_AGAIN in response.content.decode(), what


@pytest.mark.parametrize("url", ["/", "/api/runs"])
@pytest.mark.parametrize("sort", RunFilterForm.SORTS)
def test_a_cursor_from_any_row_pages_in_every_sort(client, url, sort):
    make_runs(2)
    Run.objects.filter(name="run 1").update(started_at=None, duration_ms=None)
    field = RunFilterForm.SORTS[sort][0]
    for run in Run.objects.all():
        cursor = encode_cursor(getattr(run, field), run.pk)
        for param in ("after", "before"):
            assert client.get(url, {"sort": sort, param: cursor}).status_code == 200, (run, param)


@pytest.mark.parametrize("url", ["/entities/", "/api/entities"])
def test_an_entity_cursor_that_is_not_a_type_and_id_is_a_400(client, world, url):
    for value in (["order", 1], [None, "o-1"], [["order"], "o-1"], ["order"], ["order", "o\x00"]):
        cursor = base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
        for param in ("after", "before"):
            response = client.get(url, {param: cursor})
            assert response.status_code == 400, (param, value)
            assert START_AGAIN in response.content.decode(), (param, value)
