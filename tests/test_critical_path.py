"""The critical path: the algorithm on hand-made runs (traces/critical_path.py), the
read model the store keeps (Step.critical_ms, Run.critical_path_ms) against a
recount, the run page's tab and the API."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.urls import reverse

from tests.test_query_plans import assert_walks_an_index
from tests.test_read_model_causes import change_source
from traces import queries
from traces.critical_path import RUN, CriticalPath, Timing, compute
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.ingest.records import RunRecord, StepRecord
from traces.models import Format, Run, Step

BASE = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)


def path(*steps, run_start=None, run_end=None) -> CriticalPath:
    result = compute([Timing(*step) for step in steps], run_start, run_end)
    assert result is not None
    # Every microsecond of the run is someone's: a step's or the run's own.
    assert sum(result.self_us.values()) + result.run_self_us == result.total_us
    return result


# --- the algorithm ------------------------------------------------------------------------


def test_sequential_steps_are_all_on_the_path():
    # back to back: one ends when the next starts (Jaeger's strict '<' would skip a)
    result = path((1, None, 0, 10), (2, None, 10, 30), (3, None, 30, 35))
    assert result.self_us == {3: 5, 2: 20, 1: 10}
    assert result.run_self_us == 0 and result.total_us == 35


def test_gaps_between_steps_are_the_runs_own():
    result = path((1, None, 5, 10), (2, None, 12, 20), run_start=0, run_end=25)
    assert result.self_us == {2: 8, 1: 5}
    assert result.run_self_us == 5 + 2 + 5


def test_parallel_branches_take_the_one_that_finished_last():
    result = path(
        (1, None, 0, 100),
        (2, 1, 0, 40),  # fast branch
        (3, 1, 0, 90),  # slow branch: on the path
        (4, 1, 10, 50),
    )
    assert result.self_us == {1: 10, 3: 90}


def test_nested_steps_are_walked_into_and_their_parents_kept():
    result = path(
        (1, None, 0, 100),
        (2, 1, 10, 100),
        (3, 2, 10, 100),  # fills its parent: the parent is on the path with 0
        (4, 3, 50, 60),
    )
    assert result.self_us == {1: 10, 2: 0, 3: 80, 4: 10}


def test_loop_iterations_in_sequence_are_each_on_the_path():
    iterations = [(10 + i, 1, i * 10, i * 10 + 10) for i in range(5)]
    result = path((1, None, 0, 50), *iterations)
    assert result.self_us == {1: 0, **{10 + i: 10 for i in range(5)}}


def test_overlapping_children_walk_back_from_the_start_of_the_last():
    # b finishes last; before b started, a had finished: a then b; c (overlaps b) not
    result = path(
        (1, None, 0, 100),
        (2, 1, 0, 30),
        (3, 1, 40, 100),
        (4, 1, 35, 60),
    )
    assert result.self_us == {1: 10, 3: 60, 2: 30}


def test_children_overflowing_their_parent_are_clamped_or_left_out():
    result = path(
        (1, None, 0, 50),
        (2, 1, 40, 80),  # ends after its parent: cut at 50
        (3, 1, 60, 90),  # wholly after its parent: left out
        (4, 3, 60, 70),  # with its subtree
        run_end=100,
    )
    assert result.self_us == {1: 40, 2: 10}
    assert result.run_self_us == 50


def test_a_running_step_without_an_end_reaches_the_runs_horizon():
    result = path((1, None, 0, 10), (2, None, 10, None, True), (3, 2, 12, 40))
    assert result.end == 40
    assert result.self_us == {2: 2, 3: 28, 1: 10}


def test_a_closed_step_without_an_end_spans_its_children_or_nothing():
    result = path((1, None, 0, None), (2, 1, 5, 20), (3, None, 20, None))
    assert result.self_us == {1: 5, 2: 15}


def test_a_group_without_times_spans_its_timed_children():
    result = path((1, None, None, None), (2, 1, 0, 10), (3, 1, 10, 30))
    assert result.self_us == {1: 0, 3: 20, 2: 10}


def test_no_start_anywhere_gives_no_path():
    steps = [Timing(1, None, None, 10), Timing(2, None, None, None)]
    assert compute(steps, None, None) is None
    assert compute([], 0, 10) is None


def test_zero_length_steps_are_not_on_the_path():
    result = path((1, None, 0, 10), (2, None, 10, 10), (3, None, 10, 20))
    assert result.self_us == {3: 10, 1: 10}


def test_ties_take_the_longest_child():
    result = path((1, None, 0, 10), (2, 1, 5, 10), (3, 1, 0, 10))
    assert result.self_us == {1: 0, 3: 10}


def test_a_deep_tree_needs_no_recursion():
    depth = 50_000
    steps = [(i, i - 1 if i > 1 else None, i, 2 * depth - i + 1) for i in range(1, depth + 1)]
    result = path(*steps)
    # each step keeps a microsecond either side of its child; the deepest its one
    assert result.self_us == dict.fromkeys(range(1, depth), 2) | {depth: 1}
    assert RUN not in result.self_us


# --- the read model: kept at ingest, equal to a recount -----------------------------------

TIMED_FORMATS = [name for name in Format.values if name != "greentic"]


def assert_read_model_is_the_recount(runs=None):
    for run in runs if runs is not None else Run.objects.all():
        run.refresh_from_db()
        total, self_ms = queries.critical_path.stored(run)
        expected_total, expected = queries.critical_path.recount(run)
        assert total == pytest.approx(expected_total), run
        assert self_ms.keys() == expected.keys(), run
        assert self_ms == pytest.approx(expected), run


@pytest.mark.django_db
def test_ingest_keeps_the_path_of_every_run_of_the_samples(samples):
    assert ingest_paths([samples]).failed == []
    assert_read_model_is_the_recount()


@pytest.mark.django_db
@pytest.mark.parametrize("format_name", TIMED_FORMATS)
def test_every_timed_format_has_a_path_that_adds_up(samples, format_name):
    assert ingest_paths([samples]).failed == []
    runs = Run.objects.filter(format=format_name, critical_path_ms__gt=0)
    assert runs.exists()
    for run in runs:
        on_path = Step.objects.filter(run=run, critical_ms__isnull=False)
        assert on_path.exists()
        # no step keeps more than the run; together they keep at most all of it
        kept = sum(on_path.values_list("critical_ms", flat=True))
        assert kept <= run.critical_path_ms + 0.001
        # every step on the path has its parent on it too
        ids = set(on_path.values_list("id", flat=True))
        parents = set(on_path.exclude(parent=None).values_list("parent_id", flat=True))
        assert parents <= ids


@pytest.mark.django_db
def test_greentic_runs_have_none_and_say_why(samples):
    assert ingest_paths([samples / "greentic"]).failed == []
    run = Run.objects.filter(format="greentic").first()
    assert run.times_estimated and run.critical_path_ms is None
    assert not Step.objects.filter(run__format="greentic", critical_ms__isnull=False).exists()
    assert "estimated" in queries.critical_path.why_none(run)


@pytest.mark.django_db
def test_a_resync_of_a_running_run_recomputes_its_path(runs_db):
    ingest_paths([runs_db])
    run = Run.objects.get(format="runs", status="running")
    before = queries.critical_path.stored(run)
    assert before[0] is not None
    change_source(
        runs_db,
        (
            "UPDATE steps SET status = 'completed', "
            "completed_at = '2026-03-04T09:00:00.000Z' WHERE run_id = ? AND status = 'running'",
            (run.external_id,),
        ),
        (
            "UPDATE runs SET status = 'completed', "
            "completed_at = '2026-03-04T09:00:00.000Z', "
            "updated_at = '2026-03-04T09:00:00.000Z' WHERE id = ?",
            (run.external_id,),
        ),
    )
    assert ingest_paths([runs_db]).run_ids() == [run.pk]
    run.refresh_from_db()
    assert queries.critical_path.stored(run) != before
    assert_read_model_is_the_recount()


@pytest.mark.django_db
def test_a_run_longer_than_one_write_batch_keeps_its_early_steps_path(tmp_path):
    """Steps written before the path is known (runs over HELD_STEPS) get it by UPDATE."""
    run = long_run(store.HELD_STEPS * 2 + 10)
    steps = range(run.step_count)
    assert run.critical_path_ms == pytest.approx(len(steps) * 1000)
    assert Step.objects.filter(run=run, critical_ms=1000).count() == len(steps)
    assert_read_model_is_the_recount([run])


# --- the page and the API -----------------------------------------------------------------


def richest_timed_run(format_name: str) -> Run:
    runs = Run.objects.filter(format=format_name, critical_path_ms__gt=0)
    return runs.order_by("-step_count", "pk").first()


@pytest.mark.django_db
@pytest.mark.parametrize("format_name", TIMED_FORMATS)
def test_api_lists_the_path_with_shares(client, samples, format_name):
    assert ingest_paths([samples]).failed == []
    run = richest_timed_run(format_name)
    response = client.get(reverse("api:critical_path", args=[run.pk]))
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["total_ms"] == pytest.approx(run.critical_path_ms) and data["reason"] is None
    _, expected = queries.critical_path.recount(run)
    assert [step["id"] for step in data["steps"]] == list(
        Step.objects.filter(pk__in=expected).order_by("seq").values_list("pk", flat=True)
    )
    for step in data["steps"]:
        assert set(step) == {"id", "key", "name", "start_ms", "duration_ms", "self_ms", "share"}
        assert step["self_ms"] == pytest.approx(expected[step["id"]])
        assert step["share"] == pytest.approx(step["self_ms"] / data["total_ms"])


@pytest.mark.django_db
def test_api_says_why_a_greentic_run_has_none(client, samples):
    assert ingest_paths([samples / "greentic"]).failed == []
    run = Run.objects.filter(format="greentic").first()
    data = client.get(reverse("api:critical_path", args=[run.pk])).json()
    assert data["total_ms"] is None and data["steps"] == []
    assert "estimated" in data["reason"]


@pytest.mark.django_db
def test_api_refuses_a_missing_run_and_a_bad_cursor(client, samples):
    assert ingest_paths([samples / "runs"]).failed == []
    assert client.get(reverse("api:critical_path", args=[10**9])).status_code == 404
    run = richest_timed_run("runs")
    response = client.get(reverse("api:critical_path", args=[run.pk]), {"after": "garbage"})
    assert response.status_code == 400


@pytest.mark.django_db
def test_api_pages_a_long_path_in_windows(client):
    run = long_run(queries.critical_path.CRITICAL_WINDOW + 5)
    url = reverse("api:critical_path", args=[run.pk])
    first = client.get(url).json()
    assert len(first["steps"]) == queries.critical_path.CRITICAL_WINDOW and first["next"]
    second = client.get(url, {"after": first["next"]}).json()
    assert len(second["steps"]) == 5 and second["next"] is None
    assert second["steps"][-1]["start_ms"] == pytest.approx((run.step_count - 1) * 1000)


def long_run(count: int, external_id: str = "long") -> Run:
    steps = [
        StepRecord(
            key=f"s{i}",
            name=f"step {i}",
            status="succeeded",
            started_at=BASE + timedelta(seconds=i),
            finished_at=BASE + timedelta(seconds=i + 1),
        )
        for i in range(count)
    ]
    record = RunRecord(
        format="duckflux", external_id=external_id, name=external_id, status="succeeded",
        started_at=BASE, steps=steps,
    )  # fmt: skip
    with transaction.atomic():
        store.write_run(record, source_file=None, origin="")
    return Run.objects.get(external_id=external_id)


@pytest.mark.django_db
@pytest.mark.parametrize("format_name", TIMED_FORMATS)
def test_the_tab_lists_the_path_and_the_timeline_marks_it(client, samples, format_name):
    assert ingest_paths([samples]).failed == []
    run = richest_timed_run(format_name)
    on_path = list(Step.objects.filter(run=run, critical_ms__isnull=False).order_by("seq"))
    response = client.get(reverse("traces:run-detail", args=[run.pk]), {"tab": "critical"})
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="critical-row') == min(len(on_path), 300)
    assert "Critical path" in page
    timeline = client.get(reverse("traces:run-timeline", args=[run.pk])).content.decode()
    marked = timeline.count("timeline-row depth-") and timeline.count(' critical"')
    shown = Step.objects.filter(run=run, seq__lte=300, critical_ms__isnull=False).count()
    assert marked == shown > 0


@pytest.mark.django_db
def test_the_tab_says_why_a_greentic_run_has_none(client, samples):
    assert ingest_paths([samples / "greentic"]).failed == []
    run = Run.objects.filter(format="greentic").first()
    response = client.get(reverse("traces:run-detail", args=[run.pk]), {"tab": "critical"})
    page = response.content.decode()
    assert "critical-none" in page and "estimated" in page and "critical-row" not in page


@pytest.mark.django_db
@pytest.mark.parametrize("format_name", ["runs", "duckflux", "traceos"])
def test_a_running_run_has_its_path_so_far_on_the_tab_and_the_api(client, samples, format_name):
    """The samples' runs still running: a path up to the latest moment known of them,
    said so on the tab; the API gives the same steps."""
    assert ingest_paths([samples / format_name]).failed == []
    running = Run.objects.filter(format=format_name, status="running", step_count__gt=0)
    run = running.order_by("-step_count").first()
    assert run is not None and run.critical_path_ms is not None
    page = client.get(reverse("traces:run-detail", args=[run.pk]), {"tab": "critical"})
    assert "so far (the run is still running" in page.content.decode()
    data = client.get(f"/api/runs/{run.pk}/critical-path").json()
    assert data["reason"] is None and data["total_ms"] == run.critical_path_ms
    on_path = Step.objects.filter(run=run, critical_ms__isnull=False).order_by("seq", "id")
    assert [step["key"] for step in data["steps"]] == [s.key for s in on_path][:300]


@pytest.mark.django_db
def test_the_tab_and_the_api_read_a_fixed_number_of_queries(client, django_assert_max_num_queries):
    run = long_run(400)
    url = reverse("traces:run-detail", args=[run.pk])
    with django_assert_max_num_queries(6):
        assert client.get(url, {"tab": "critical"}).status_code == 200
    with django_assert_max_num_queries(3):
        assert client.get(reverse("api:critical_path", args=[run.pk])).status_code == 200
    # the htmx swap of the tab area only
    response = client.get(url, {"tab": "critical"}, headers={"HX-Request": "true"})
    assert 'id="run-tabs"' in response.content.decode()


@pytest.mark.django_db
def test_path_windows_walk_an_index():
    run = long_run(50)
    page, _ = queries.critical_path.path_window(run, size=10)
    for after in (None, page.next_cursor):
        assert_walks_an_index(
            lambda after=after: queries.critical_path.path_window(run, after=after, size=10)
        )


def test_values_the_store_would_not_keep_count_as_unknown():
    from traces.critical_path import span_of

    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert span_of(start, None, float("nan")) == (span_of(start, None, None)[0], None)
    assert span_of(start, None, True)[1] is None
    assert span_of(start, None, "12")[1] is None
    assert span_of("2026-01-01", None, 5.0) == (None, None)
    # a negative duration is no time at all; a finish before the start is the start
    assert span_of(start, None, -5.0)[1] == span_of(start, None, 0.0)[1]
    assert span_of(start, start - timedelta(seconds=1), None) == (span_of(start, None, 0)[0],) * 2


@pytest.mark.django_db
def test_the_tabs_pager_swaps_the_next_window(client):
    run = long_run(queries.critical_path.CRITICAL_WINDOW + 5)
    url = reverse("traces:run-detail", args=[run.pk])
    first = client.get(url, {"tab": "critical"}).content.decode()
    assert first.count('class="critical-row') == queries.critical_path.CRITICAL_WINDOW
    assert "Outside any step" not in first  # the path does not fit one window
    (next_url,) = re.findall(r'href="([^"]*after=[^"]*)"', first)
    headers = {"HX-Request": "true", "HX-Target": "run-tabs"}
    second = client.get(html.unescape(next_url), headers=headers).content.decode()
    assert second.count('class="critical-row') == 5
    assert second.lstrip().startswith('<div id="run-tabs"')
    assert "earlier steps" in second and "later steps" not in second


@pytest.mark.django_db
def test_hostile_names_on_the_path_are_escaped(client):
    record = RunRecord(
        format="duckflux", external_id="x", name="x", status="succeeded", started_at=BASE,
        steps=[StepRecord(key="<k>", name="<script>alert(1)</script>", status="succeeded",
                          started_at=BASE, duration_ms=5.0)],
    )  # fmt: skip
    with transaction.atomic():
        store.write_run(record, source_file=None, origin="")
    run = Run.objects.get(external_id="x")
    page = client.get(reverse("traces:run-detail", args=[run.pk]), {"tab": "critical"})
    text = page.content.decode()
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    data = client.get(reverse("api:critical_path", args=[run.pk])).json()
    assert data["steps"][0]["name"] == "<script>alert(1)</script>"


def test_a_hostile_finite_duration_is_held_not_overflowed():
    from traces.critical_path import MAX_DURATION_MS, duration_micros

    assert duration_micros(1e308) == MAX_DURATION_MS * 1000
    assert duration_micros(-5.0) == 0 and duration_micros(float("inf")) is None
    assert duration_micros(1.5) == 1500
