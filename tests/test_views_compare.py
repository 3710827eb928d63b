"""Two runs compared: steps aligned by path (added, removed, status and duration
changes, loops), the summary and first divergence, windows, bad input, escaping,
the API twin, and the query count flat in rows."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from traces.ingest.loader import ingest_paths
from traces.ingest.records import RunRecord, StepRecord
from traces.ingest.step_paths import StepPaths, readable
from traces.ingest.store import write_run
from traces.models import Run, Step
from traces.queries.compare import (
    Threshold,
    classify,
    compare_page,
    compare_summary,
    cursor_at,
)

pytestmark = pytest.mark.django_db
URL = reverse("traces:compare")
API = "/api/runs/compare"
T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def _run(external_id: str, steps: list[tuple], *, run_type="nightly", started=T0, **fields):
    """A run from (key, name, parent key, status, duration ms[, loop index]) tuples."""
    records = [
        StepRecord(
            key=key,
            name=name,
            parent_key=parent,
            status=status,
            duration_ms=duration,
            loop_index=rest[0] if rest else None,
            started_at=started,
        )
        for key, name, parent, status, duration, *rest in steps
    ]
    record = RunRecord(
        format="runs",
        external_id=external_id,
        name=f"run {external_id}",
        type=run_type,
        started_at=started,
        steps=records,
        **fields,
    )
    return Run.objects.get(pk=write_run(record, source_file=None, origin="").run_id)


BASE = [
    ("1", "fetch", None, "succeeded", 1000),
    ("2", "process", None, "succeeded", 5000),
    ("3", "item", "2", "succeeded", 100, 0),
    ("4", "save", "3", "succeeded", 50, 0),
    ("5", "item", "2", "succeeded", 100, 1),
    ("6", "save", "5", "succeeded", 50, 1),
    ("7", "notify", None, "succeeded", 200),
]
CHANGED = [
    ("a", "fetch", None, "succeeded", 1000),
    ("b", "process", None, "succeeded", 9000),  # slower: +4 s, +80 %
    ("c", "item", "b", "succeeded", 100, 0),
    ("d", "save", "c", "failed", 50, 0),  # status changed
    ("e", "item", "b", "succeeded", 110, 1),  # +10 ms: the same
    ("f", "save", "e", "succeeded", 50, 1),
    ("g", "item", "b", "succeeded", 100, 2),  # a new iteration: added
    ("h", "save", "g", "succeeded", 50, 2),
    ("i", "audit", None, "succeeded", 10),  # added
]  # "notify" is gone: removed


@pytest.fixture
def pair():
    a = _run("A", BASE, output_counters={"fetched": 10, "note": "x"})
    b = _run("B", CHANGED, started=T0 + timedelta(hours=1), output_counters={"fetched": 12})
    return a, b


def _changes(a, b, **options) -> dict[str, str]:
    page = compare_page(a.pk, b.pk, Threshold(), **options)
    return {readable(row.path): row.change for row in page.rows}


# --- paths ----------------------------------------------------------------------------------


def test_paths_follow_the_tree_with_loop_indexes_and_repeat_numbers(pair):
    a, _b = pair
    paths = dict(Step.objects.filter(run=a).values_list("key", "path"))
    assert readable(paths["4"]) == "process / [0] item / save"
    assert readable(paths["6"]) == "process / [1] item / save"
    # Parents sort right before their descendants, iterations in order.
    ordered = [k for k, _ in sorted(paths.items(), key=lambda kv: kv[1])]
    assert ordered == ["1", "7", "2", "3", "4", "5", "6"]


def test_repeated_names_are_numbered_and_long_paths_stay_unique_and_short():
    paths = StepPaths()
    first = paths.add(1, None, "retry", None)
    second = paths.add(2, None, "retry", None)
    assert readable(first) == "retry" and readable(second) == "retry #2"
    assert first < second < paths.add(3, None, "retry2", None)
    parent = None
    for index in range(400):  # a deep chain of long names
        paths.add(100 + index, parent, "n" * 90 + "\x01", None)
        parent = 100 + index
    deep = [paths.paths[100 + index] for index in range(300, 400)]
    assert len(set(deep)) == 100 and max(map(len, deep)) <= 600


def test_stored_paths_match_what_the_migration_computes(samples):
    """The store and the migration that fills older rows give the same paths."""
    ingest_paths([samples / "runs", samples / "duckflux" / "json"])
    for run in Run.objects.all()[:20]:
        paths = StepPaths()
        steps = Step.objects.filter(run=run).order_by("seq", "id")
        for step in steps:
            computed = paths.add(step.pk, step.parent_id, step.name or step.type, step.loop_index)
            assert computed == step.path
    duplicates = Step.objects.values("run", "path").annotate(n=Count("id")).filter(n__gt=1)
    assert not duplicates.exists()


# --- the comparison -------------------------------------------------------------------------


def test_marks_added_removed_status_and_duration_changes(pair):
    a, b = pair
    assert _changes(a, b) == {
        "fetch": "same",
        "notify": "removed",
        "audit": "added",
        "process": "duration",
        "process / [0] item": "same",
        "process / [0] item / save": "status",
        "process / [1] item": "same",
        "process / [1] item / save": "same",
        "process / [2] item": "added",
        "process / [2] item / save": "added",
    }


def test_the_threshold_decides_a_duration_change(pair):
    a, b = pair
    assert Threshold(percent=20, ms=100).changed(5000, 9000)
    assert not Threshold(percent=100, ms=100).changed(5000, 9000)
    assert not Threshold(percent=0, ms=5000).changed(5000, 9000)
    assert not Threshold().changed(None, 9000)
    page = compare_page(a.pk, b.pk, Threshold(percent=0, ms=5))
    changed = {readable(row.path) for row in page.rows if row.change == "duration"}
    assert changed == {"process", "process / [1] item"}


def test_summary_counts_every_change_and_finds_the_first_divergence(pair):
    a, b = pair
    summary = compare_summary(a, b, Threshold())
    assert summary == {
        "a_steps": 7,
        "b_steps": 9,
        "matched": 6,
        "added": 3,
        "removed": 1,
        "status": 1,
        "duration": 1,
        "same": 4,
        "first_divergence": summary["first_divergence"],
    }
    # In path order: audit (added) comes first.
    assert readable(summary["first_divergence"]) == "audit"
    # The summary agrees with the rows.
    rows = compare_page(a.pk, b.pk, Threshold()).rows
    for change in ("added", "removed", "status", "duration", "same"):
        assert sum(row.change == change for row in rows) == summary[change]
    # The other way round (the bigger run drives the join): the mirror image.
    back = compare_summary(b, a, Threshold())
    assert (back["added"], back["removed"], back["status"]) == (1, 3, 1)
    assert back["duration"] == 1 and readable(back["first_divergence"]) == "audit"


@pytest.mark.parametrize("threshold", [Threshold(), Threshold(percent=0, ms=5)])
def test_two_big_runs_are_counted_alike_by_the_merged_summary(pair, monkeypatch, threshold):
    """Two big runs on PostgreSQL are merged in path order (one FULL JOIN), not
    joined step by step: the same counts and first divergence, either way round,
    for identical runs, for runs without a step in common and for an empty run."""
    a, b = pair
    twin = _run("A2", BASE, started=T0 + timedelta(hours=2))
    apart = _run("C", [(str(i), f"other {i}", None, "failed", 10) for i in range(3)])
    empty = _run("E", [])
    pairs = [(a, b), (b, a), (a, twin), (a, apart), (apart, b), (a, empty), (empty, b)]
    joined = [compare_summary(x, y, threshold) for x, y in pairs]
    monkeypatch.setattr("traces.queries.compare.SUMMARY_INLINE", 0)  # every run is "big"
    with CaptureQueriesContext(connection) as merged_queries:
        merged = [compare_summary(x, y, threshold) for x, y in pairs]
    assert merged == joined
    assert joined[2]["first_divergence"] is None and joined[2]["same"] == 7
    assert (joined[3]["matched"], joined[3]["added"], joined[3]["removed"]) == (0, 3, 7)
    # On PostgreSQL one query a pair of big runs (an empty run is never big); else
    # the join, then a probe of the other run when needed.
    selects = [q["sql"] for q in merged_queries.captured_queries if q["sql"].startswith("SELECT")]
    merges = [sql for sql in selects if "FULL JOIN" in sql]
    if connection.vendor == "postgresql":
        assert len(merges) == 5 and len(selects) - len(merges) <= 2 * 2
    else:
        assert not merges and len(pairs) < len(selects) <= 2 * len(pairs)


def test_identical_runs_have_no_divergence():
    a, b = _run("A", BASE), _run("B", BASE)
    summary = compare_summary(a, b, Threshold())
    assert summary["first_divergence"] is None and summary["same"] == 7
    page = compare_page(a.pk, b.pk, Threshold(), changes_only=True)
    assert page.rows == [] and page.next_cursor is None


def test_windows_walk_both_runs_forward_and_back_without_losing_a_row():
    many = [(str(i), f"step {i:03d}", None, "succeeded", 100) for i in range(120)]
    other = [(str(i), f"step {i:03d}", None, "succeeded", 100) for i in range(60, 180)]
    a, b = _run("A", many), _run("B", other)
    seen, cursor = [], None
    while True:
        page = compare_page(a.pk, b.pk, Threshold(), after=cursor, size=25)
        seen += [row.path for row in page.rows]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == sorted(f"step {i:03d}" for i in range(180))
    back = compare_page(a.pk, b.pk, Threshold(), before=page.prev_cursor, size=25)
    assert [row.path for row in back.rows] == seen[-25 - len(page.rows) : -len(page.rows)]
    start = compare_page(a.pk, b.pk, Threshold(), after=cursor_at("step 100"), size=3)
    assert [row.change for row in start.rows] == ["same"] * 3
    assert start.rows[0].path == "step 100"


def test_changes_only_reads_on_and_stops_at_its_scan_limit():
    steps = [(str(i), f"s{i:04d}", None, "succeeded", 100) for i in range(300)]
    changed = [*steps[:-1], ("299", "s0299", None, "failed", 100)]
    a, b = _run("A", steps), _run("B", changed)
    page = compare_page(a.pk, b.pk, Threshold(), changes_only=True)
    assert [(row.path, row.change) for row in page.rows] == [("s0299", "status")]
    cut = compare_page(a.pk, b.pk, Threshold(), changes_only=True, scan_limit=100)
    assert cut.rows == [] and cut.cut_short and cut.next_cursor
    rest = compare_page(a.pk, b.pk, Threshold(), changes_only=True, after=cut.next_cursor)
    assert [row.path for row in rest.rows] == ["s0299"]


def test_classify_orders_the_kinds_of_change():
    from traces.queries.compare import StepSide

    def side(status, ms):
        return StepSide("p", 1, "k", "n", "", status, ms, None, None, None, None, None, None, 0)

    assert classify(None, side("succeeded", 1), Threshold()) == "added"
    assert classify(side("succeeded", 1), None, Threshold()) == "removed"
    assert classify(side("succeeded", 1), side("failed", 9000), Threshold()) == "status"
    assert classify(side("running", None), side("succeeded", 10), Threshold()) == "status"


# --- the page -------------------------------------------------------------------------------


def test_page_shows_both_runs_their_counters_and_the_changes(client, pair):
    a, b = pair
    response = client.get(URL, {"a": a.pk, "b": b.pk})
    assert response.status_code == 200
    html = response.content.decode()
    assert "run A" in html and "run B" in html
    assert "3 only in B" in html and "1 only in A" in html and "1 status changed" in html
    assert "fetched" in html and "+2" in html  # output counters side by side
    assert 'class="cmp-row ch-status"' in html and 'class="cmp-row ch-removed"' in html
    assert "+4.0s (+80 %)" in html
    assert 'id="first-divergence"' in html and "data-first-divergence" in html
    # Enter on a row follows B's step, A's where B has none.
    assert f'<a data-row-link href="{reverse("traces:step-detail", args=[b.pk, "d"])}"' in html
    assert f'<a data-row-link href="{reverse("traces:step-detail", args=[a.pk, "7"])}"' in html


def test_first_divergence_link_opens_the_window_at_it(client, pair):
    a, b = pair
    first_url = client.get(URL, {"a": a.pk, "b": b.pk}).context["first_url"]
    response = client.get(first_url)
    rows = response.context["page"].rows
    assert readable(rows[0].path) == "audit"


def test_changes_only_hides_the_same_steps(client, pair):
    a, b = pair
    response = client.get(URL, {"a": a.pk, "b": b.pk, "changes": "1"})
    changes = [row.change for row in response.context["page"].rows]
    assert changes and "same" not in changes and len(changes) == 6
    # It starts at the first change: nothing before it to page back to.
    assert "prev" not in response.context["page_links"]


def test_htmx_window_gets_the_rows_alone(client):
    steps = [(str(i), f"s{i:04d}", None, "succeeded", 100) for i in range(450)]
    a, b = _run("A", steps), _run("B", steps[:-1])
    first = client.get(URL, {"a": a.pk, "b": b.pk})
    next_url = first.context["page_links"]["next"]
    response = client.get(next_url, headers={"HX-Request": "true", "HX-Target": "compare-rows"})
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and 'id="compare-rows"' in html
    assert "s0200" in html and "s0199" not in html


def test_selected_rows_of_the_runs_list_compare_older_with_newer(client, pair):
    a, b = pair
    response = client.get(URL, {"run": [b.pk, a.pk]})
    assert response.status_code == 200
    assert response.context["a"] == a and response.context["b"] == b
    one = client.get(URL, {"run": [a.pk]})
    assert one.status_code == 400 and b"exactly two runs" in one.content


def test_compare_with_the_previous_run_of_its_type(client, pair):
    a, b = pair
    _run("other type", BASE, run_type="weekly", started=T0 + timedelta(minutes=30))
    response = client.get(URL, {"b": b.pk, "with": "previous"})
    assert response.status_code == 200 and response.context["a"] == a
    first = client.get(URL, {"b": a.pk, "with": "previous"})
    assert first.status_code == 404 and b"no earlier run" in first.content


def test_run_page_links_to_the_comparison_with_the_previous_run(client, pair):
    _a, b = pair
    html = client.get(b.get_absolute_url()).content.decode()
    assert f"{URL}?b={b.pk}&amp;with=previous" in html


def test_runs_list_has_checkboxes_and_a_compare_button(client, pair):
    a, _b = pair
    html = client.get(reverse("traces:run-list")).content.decode()
    assert f'name="run" value="{a.pk}"' in html and 'form="compare-runs"' in html
    assert f'action="{URL}"' in html


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"a": "1"}, 400, "Give the id of the run"),
        ({"a": "x", "b": "2"}, 400, "A run id is a whole number"),
        ({"a": "1.5", "b": "2"}, 400, "A run id is a whole number"),
        ({"a": "-3", "b": "2"}, 400, "1 or more"),
        ({"a": str(2**70), "b": "2"}, 400, "No run has an id this large"),
        ({"a": "99999", "b": "99998"}, 404, "There is no run B with id 99998"),
        ({"b": "99998", "with": "previous"}, 404, "There is no run B"),
        ({"a": "5", "b": "5"}, 400, "same run"),
        ({"run": ["x", "2"]}, 400, "whole number"),
        ({"run": ["3", "3"]}, 400, "two different runs"),
        ({"run": ["3", "99999"]}, 404, "no run with id"),
        ({"a": "1", "b": "2", "percent": "nan"}, 400, "percent"),
        ({"a": "1", "b": "2", "after": "!!"}, None, ""),
    ],
)
def test_bad_input_is_a_clear_message_never_a_500(client, pair, query, status, message):
    a, b = pair
    ids = {"1": str(a.pk), "2": str(b.pk)}
    query = {k: ids.get(v, v) if k in ("a", "b") else v for k, v in query.items()}
    response = client.get(URL, query)
    if status is None:
        assert response.status_code == 400 and b"cursor" in response.content
        return
    assert response.status_code == status, response.content[:500]
    assert message.encode() in response.content


def test_empty_form_without_runs(client):
    response = client.get(URL)
    assert response.status_code == 200 and b"Choose two runs" in response.content


def test_hostile_names_are_escaped(client):
    evil = '<script>alert("x")</script>'
    a = _run("A", [("1", evil, None, "succeeded", 10)], output_counters={evil: 1})
    b = _run("B", [("1", evil, None, "failed", 10)], started=T0 + timedelta(hours=1))
    html = client.get(URL, {"a": a.pk, "b": b.pk}).content.decode()
    assert evil not in html and "&lt;script&gt;" in html


def test_query_count_is_flat_in_rows(client, django_assert_max_num_queries):
    small = [(str(i), f"s{i:04d}", None, "succeeded", 100) for i in range(5)]
    big = [(str(i), f"s{i:04d}", None, "succeeded", 100) for i in range(600)]
    for name, steps in (("small", small), ("big", big)):
        a, b = _run(f"{name}A", steps), _run(f"{name}B", steps[1:], started=T0 + timedelta(1))
        # The two runs (one query), the summary (three), a window of each run (two),
        # the session's user.
        with django_assert_max_num_queries(8):
            assert client.get(URL, {"a": a.pk, "b": b.pk}).status_code == 200
        with django_assert_max_num_queries(6):
            assert client.get(API, {"a": a.pk, "b": b.pk}).status_code == 200


def test_samples_of_one_type_compare(client, samples):
    ingest_paths([samples / "runs"])
    run_type = (
        Run.objects.exclude(type="").values("type").annotate(n=Count("id")).filter(n__gt=1)[0]
    )["type"]
    older, newer = Run.objects.filter(type=run_type).order_by("started_at", "id")[:2]
    response = client.get(URL, {"a": older.pk, "b": newer.pk})
    assert response.status_code == 200
    summary = response.context["summary"]
    assert summary["a_steps"] == Step.objects.filter(run=older).count()
    assert summary["b_steps"] == Step.objects.filter(run=newer).count()
    data = client.get(API, {"a": older.pk, "b": newer.pk}).json()
    assert data["summary"]["matched"] == summary["matched"]
    assert len(data["steps"]) == min(
        200, summary["matched"] + summary["added"] + summary["removed"]
    )


# --- the API --------------------------------------------------------------------------------


def test_api_answers_the_same_rows_and_summary(client, pair):
    a, b = pair
    data = client.get(API, {"a": a.pk, "b": b.pk}).json()
    assert data["a"]["id"] == a.pk and data["b"]["id"] == b.pk
    assert data["summary"]["added"] == 3 and data["summary"]["first_divergence"] == "audit"
    by_path = {step["path"]: step for step in data["steps"]}
    assert by_path["notify"]["change"] == "removed" and by_path["notify"]["b"] is None
    assert by_path["audit"]["a"] is None and by_path["audit"]["b"]["status"] == "succeeded"
    save = by_path["process / [0] item / save"]
    assert save["change"] == "status" and save["a"]["status"] == "succeeded"
    assert save["b"]["status"] == "failed" and save["b"]["url"].endswith("/steps/d/")
    process = by_path["process"]
    assert process["delta_ms"] == 4000 and process["delta_percent"] == 80
    assert data["next"] is None and data["prev"] is None


def test_api_pages_with_cursors_and_filters(client):
    steps = [(str(i), f"s{i:04d}", None, "succeeded", 100) for i in range(450)]
    a, b = _run("A", steps), _run("B", steps[:-1])
    first = client.get(API, {"a": a.pk, "b": b.pk}).json()
    assert len(first["steps"]) == 200 and first["next"]
    second = client.get(API, {"a": a.pk, "b": b.pk, "after": first["next"]}).json()
    assert second["steps"][0]["path"] == "s0200" and second["prev"]
    changes = client.get(API, {"a": a.pk, "b": b.pk, "changes": "1"}).json()
    assert [step["path"] for step in changes["steps"]] == ["s0449"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({}, 400),
        ({"a": "x", "b": "1"}, 400),
        ({"a": "1", "b": "1"}, 400),
        ({"a": "99999", "b": "1"}, 404),
        ({"a": "1", "b": "2", "after": "zz"}, 400),
    ],
)
def test_api_bad_input(client, pair, query, status):
    a, b = pair
    ids = {"1": str(a.pk), "2": str(b.pk)}
    query = {k: ids.get(v, v) if k in ("a", "b") else v for k, v in query.items()}
    response = client.get(API, query)
    assert response.status_code == status
    assert response.json()["detail"]


def test_two_big_runs_get_their_summary_after_the_page(client, pair, monkeypatch):
    a, b = pair
    monkeypatch.setattr("traces.queries.compare.SUMMARY_INLINE", 5)  # both runs are "big"
    response = client.get(URL, {"a": a.pk, "b": b.pk})
    html = response.content.decode()
    assert response.context["summary"] is None and "Counting the changes" in html
    summary_url = response.context["summary_url"]
    assert f'hx-get="{summary_url.replace("&", "&amp;")}"' in html
    part = client.get(summary_url, headers={"HX-Request": "true", "HX-Target": "compare-summary"})
    fragment = part.content.decode()
    assert (
        "<html" not in fragment
        and "3 only in B" in fragment
        and "data-first-divergence" in fragment
    )
    whole = client.get(summary_url)  # without JavaScript: the whole page, counted
    assert whole.context["summary"]["added"] == 3
    api = client.get(API, {"a": a.pk, "b": b.pk}).json()
    assert api["summary"] is None and len(api["steps"]) == 10
    asked = client.get(API, {"a": a.pk, "b": b.pk, "summary": "1"}).json()
    assert asked["summary"]["added"] == 3


def test_a_run_read_again_gets_the_paths_of_its_new_tree():
    run = _run("A", BASE)
    again = _run("A", [("1", "fetch", None, "succeeded", 1000), ("9", "renamed", "1", "failed", 5)])
    assert again.pk == run.pk
    paths = sorted(readable(p) for p in Step.objects.filter(run=run).values_list("path", flat=True))
    assert paths == ["fetch", "fetch / renamed"]


@pytest.mark.parametrize("format", ["duckflux", "greentic", "traceos", "runs", "workflow", "otlp"])
def test_runs_of_every_format_compare_through_page_and_api(client, samples, format):
    """Two runs of each format's samples (of one type where it has two), running
    runs and runs without timestamps among them: every step is accounted for."""
    ingest_paths([samples / format])
    runs = Run.objects.filter(format=format)
    typed = runs.exclude(type="").values("type").annotate(n=Count("id")).filter(n__gt=1)
    if typed:
        runs = runs.filter(type=typed[0]["type"])
    older, newer = runs.order_by("started_at", "id")[:2]
    response = client.get(URL, {"a": older.pk, "b": newer.pk})
    assert response.status_code == 200
    summary = response.context["summary"]
    counted = {
        run.pk: Step.objects.filter(run=run, synthetic=False).count() for run in (older, newer)
    }
    assert (summary["a_steps"], summary["b_steps"]) == (counted[older.pk], counted[newer.pk])
    kinds = summary["added"] + summary["removed"] + summary["status"] + summary["duration"]
    assert kinds + summary["same"] == summary["matched"] + summary["added"] + summary["removed"]
    data = client.get(API, {"a": older.pk, "b": newer.pk}).json()
    assert data["summary"]["matched"] == summary["matched"]
    rows = len(data["steps"])
    assert rows == min(200, summary["matched"] + summary["added"] + summary["removed"])
    if newer.status == "running" or older.status == "running":
        assert b"running" in response.content


def test_a_running_run_and_one_without_times_compare(client):
    done = _run("done", BASE, status="succeeded")
    running_steps = [
        (key, name, parent, "running" if key == "2" else status, None if key == "2" else ms, *rest)
        for key, name, parent, status, ms, *rest in BASE[:4]
    ]
    running = _run("live", running_steps, status="running", started=None)
    response = client.get(URL, {"a": done.pk, "b": running.pk})
    assert response.status_code == 200
    rows = {readable(row.path): row for row in response.context["page"].rows}
    assert rows["process"].change == "status" and rows["process"].delta_ms is None
    assert rows["notify"].change == "removed"
    assert "running" in response.content.decode()
    assert b"data-running-note" in response.content and b"data-times-note" not in response.content
    assert "Run B is still running" in response.content.decode()
    summary = response.context["summary"]
    assert (summary["status"], summary["removed"], summary["duration"]) == (1, 3, 0)
    # No start time: "previous" has no earlier run to find by time, and says so.
    assert client.get(URL, {"b": running.pk, "with": "previous"}).status_code == 404


def test_runs_without_start_times_say_their_times_are_estimated(client, samples):
    """greentic records durations only: the page says its start times are estimated
    and its durations compared as recorded (they are)."""
    ingest_paths([samples / "greentic"])
    a, b = Run.objects.filter(format="greentic").order_by("pk")[:2]
    response = client.get(URL, {"a": a.pk, "b": b.pk})
    assert response.status_code == 200
    page = response.content.decode()
    assert "data-times-note" in page and "Both runs' sources record how long" in page
    assert "data-running-note" not in page
    durations = [row.a.duration_ms for row in response.context["page"].rows if row.a]
    assert durations and all(ms is not None for ms in durations)
