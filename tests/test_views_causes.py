"""The failed-steps page's causes box with a cause chosen (the table collapsed to it,
its breakdown by run type and step name) and over a relative range (last 1 h / 24 h /
7 d: the FailureSlice read model, sparklines over the range), on the real samples and
generated failures."""

import os
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from tests.factories import make_runs, make_steps, recount_failure_causes
from traces.causes import slot_start
from traces.ingest.loader import ingest_paths
from traces.models import Step
from traces.queries import errors

URL = reverse("traces:step-list")
TIMEOUT = "canceling statement due to statement timeout"


def body(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


# --- a chosen cause, on the samples ----------------------------------------------------------


@pytest.mark.django_db
def test_choosing_a_cause_collapses_the_table_to_it_with_a_way_back(client, samples):
    ingest_paths([samples])
    every = client.get(URL, {"status": "failed"})
    causes = every.context["groups"].groups
    assert len(causes) > 3 and len(every.context["spark_rows"]) > 3
    chosen = client.get(URL, {"status": "failed", "error_group": TIMEOUT})
    html = body(chosen)
    rows = chosen.context["spark_rows"]
    assert [row["group"].text for row in rows] == [TIMEOUT]
    assert html.count('class="selected" aria-current="true"') == 1
    assert f"← all {len(causes)} causes" in html
    # The way back is the same page without the cause.
    assert 'href="?status=failed" hx-get="?status=failed" data-all-causes' in html
    assert "one chosen" in html
    # Its steps are the rows.
    assert {step.error_cause for step in chosen.context["page"].items} == {TIMEOUT}


@pytest.mark.django_db
def test_a_chosen_causes_breakdown_counts_each_of_its_failures_once(client, samples):
    ingest_paths([samples])
    for cause in [group.text for group in errors.failure_groups({}).groups[:6]]:
        response = client.get(URL, {"status": "failed", "error_group": cause})
        breakdown, group = response.context["breakdown"], response.context["selected_group"]
        failed = Step.objects.filter(status="failed", synthetic=False, error_cause=cause)
        expected_types: dict = {}
        expected_names: dict = {}
        for run_type, name in failed.values_list("run__type", "name"):
            expected_types[run_type] = expected_types.get(run_type, 0) + 1
            expected_names[name[:100]] = expected_names.get(name[:100], 0) + 1
        assert dict(breakdown.run_types) == expected_types
        assert dict(breakdown.step_names) == expected_names
        assert sum(dict(breakdown.run_types).values()) == group.count == failed.count()


@pytest.mark.django_db
def test_breakdown_links_filter_the_list_to_their_counts(client, samples):
    ingest_paths([samples])
    response = client.get(URL, {"status": "failed", "error_group": TIMEOUT})
    html = body(response)
    breakdown = response.context["breakdown"]
    run_type, type_count = breakdown.run_types[0]
    name, name_count = breakdown.step_names[0]
    assert "By run type" in html and "By step name" in html
    by_type = client.get(URL, {"status": "failed", "error_group": TIMEOUT, "run_type": run_type})
    assert by_type.context["selected_group"].count == type_count
    assert by_type.context["groups"].source == errors.DAYS
    by_name = client.get(
        URL, {"status": "failed", "error_group": TIMEOUT, "name": name, "name_match": "exact"}
    )
    # An exact step name is FailureSlice's: still no step grouped.
    assert by_name.context["groups"].source == errors.SLOTS
    assert by_name.context["selected_group"].count == name_count
    assert by_name.context["count"] == name_count
    assert {step.name for step in by_name.context["page"].items} == {name}
    # The page links them so.
    assert f"name={name}&amp;name_match=exact".replace(" ", "+") in html or (
        "name_match=exact" in html
    )


@pytest.mark.django_db
def test_the_breakdown_over_the_steps_is_the_read_models(client, samples):
    """With a filter no read model holds (an error text), the breakdown is grouped
    over the cause's failed steps: the same counts."""
    ingest_paths([samples])
    from_slices = errors.cause_breakdown({"status": "failed"}, TIMEOUT)
    from_steps = errors.cause_breakdown({"status": "failed", "error": "timeout"}, TIMEOUT)
    assert errors.groups_source({"error": "timeout"}) == errors.STEPS
    assert from_slices == from_steps
    assert from_slices.run_types


@pytest.mark.django_db
def test_an_unknown_cause_says_so_and_shows_no_breakdown(client, samples):
    ingest_paths([samples / "runs"])
    response = client.get(URL, {"status": "failed", "error_group": "never <n> seen"})
    html = body(response)
    assert response.context["breakdown"] is None
    assert "No failed step matching these filters has the cause" in html
    assert "By run type" not in html


@pytest.mark.django_db
def test_hostile_run_types_and_names_in_the_breakdown_are_text(client):
    run = make_runs(1, status="failed", type="<script>alert(1)</script>")[0]
    steps = make_steps(run, 2, status="failed", error="boom")
    Step.objects.filter(pk__in=[s.pk for s in steps]).update(name='<img src=x onerror="y">')
    recount_failure_causes()
    html = body(client.get(URL, {"status": "failed", "error_group": "boom"}))
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- relative ranges, from FailureSlice --------------------------------------------------------


def recent_failures() -> dict[str, int]:
    """Failures of one cause 20 minutes, 5 hours, 3 days and 20 days ago, in two run
    types; how many each preset should see."""
    now = datetime.now(UTC)
    ages = [timedelta(minutes=20)] * 2 + [timedelta(hours=5)] * 3 + [timedelta(days=3)] * 4
    ages += [timedelta(days=20)] * 5
    nightly = make_runs(1, status="failed", type="nightly")[0]
    hourly = make_runs(1, status="failed", type="hourly")[0]
    steps = make_steps(nightly, 7, status="failed", error="upstream 503 from billing")
    steps += make_steps(hourly, 7, status="failed", start=7, error="upstream 503 from billing")
    for step, age in zip(steps, ages, strict=True):
        step.started_at = now - age
    Step.objects.bulk_update(steps, ["started_at"])
    recount_failure_causes()
    return {"1h": 2, "24h": 5, "7d": 9, "30d": 14}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("since", "unit", "most_bars"),
    [("1h", "10 min", 8), ("24h", "hour", 26), ("7d", "4 hours", 44), ("30d", "day", 32)],
)
def test_presets_read_the_slots_and_draw_the_range(client, since, unit, most_bars):
    expected = recent_failures()[since]
    response = client.get(URL, {"status": "failed", "since": since})
    html = body(response)
    groups = response.context["groups"]
    assert groups.source == errors.SLOTS
    assert groups.steps_read == expected
    assert groups.spark_unit == unit
    spark = groups.groups[0].spark
    assert sum(bucket["n"] for bucket in spark) == expected
    assert len(spark) <= most_bars
    # The line spans the range (to now), not just the failures in it.
    since_at = response.context["range_since"]
    assert spark[0]["at"] <= since_at < spark[1]["at"]
    assert spark[-1]["at"] <= datetime.now(UTC)
    # The rows are the same failures.
    assert response.context["count"] == expected
    assert f'aria-current="true">last {since[:-1]} {since[-1]}' in html
    assert "UTC" in html


@pytest.mark.django_db
def test_a_relative_range_is_snapped_to_its_slot_and_says_from_when(client):
    recent_failures()
    response = client.get(URL, {"status": "failed", "since": "24h"})
    since_at = response.context["range_since"]
    assert since_at.minute % 10 == 0 and since_at.second == since_at.microsecond == 0
    assert timedelta(hours=24) <= datetime.now(UTC) - since_at <= timedelta(hours=24, minutes=11)
    assert since_at.strftime("from %Y-%m-%d %H:%M") in body(response)
    # An absolute time inside a slot is not snapped: the steps answer it exactly.
    inside = (datetime.now(UTC) - timedelta(hours=5, minutes=3)).strftime("%Y-%m-%d %H:%M:%S")
    exact = client.get(URL, {"status": "failed", "since": inside})
    assert exact.context["groups"].source == errors.STEPS


@pytest.mark.django_db
def test_a_chosen_cause_over_a_preset_breaks_down_that_range(client):
    recent_failures()
    response = client.get(
        URL, {"status": "failed", "since": "24h", "error_group": "upstream <n> from billing"}
    )
    breakdown = response.context["breakdown"]
    # 20 minutes ago: 2 nightly; 5 hours ago: 3 nightly (positions 2..4 of 7).
    assert breakdown.run_types == [("nightly", 5)]
    assert sum(n for _name, n in breakdown.step_names) == 5
    week = client.get(
        URL, {"status": "failed", "since": "7d", "error_group": "upstream <n> from billing"}
    )
    assert dict(week.context["breakdown"].run_types) == {"nightly": 7, "hourly": 2}


@pytest.mark.django_db
def test_the_api_draws_the_same_range(client):
    recent_failures()
    answer = client.get("/api/steps/errors", {"since": "24h"}).json()
    assert answer["spark_unit"] == "hour" and answer["from_read_model"]
    assert sum(point["n"] for point in answer["groups"][0]["spark"]) == 5


@pytest.mark.django_db
def test_a_causes_steps_link_lists_what_its_count_counted(client):
    """`since=1h` counts from its first 10-minute slot; the group's `steps` link
    (/api/steps) lists from there too, not from an hour ago to the second."""
    now = datetime.now(UTC)
    slot = slot_start(now - timedelta(hours=1))
    run = make_runs(1, status="failed")[0]
    [early, *recent] = make_steps(run, 3, status="failed", error="upstream 503 from billing")
    # In the snapped slot, before "an hour ago" (or on it, when that is a slot's start).
    early.started_at = slot + (now - timedelta(hours=1) - slot) / 2
    for step in recent:
        step.started_at = now - timedelta(minutes=5)
    Step.objects.bulk_update([early, *recent], ["started_at"])
    recount_failure_causes()
    [group] = client.get("/api/steps/errors", {"since": "1h"}).json()["groups"]
    assert group["count"] == 3
    listed = client.get(group["steps"]).json()
    assert listed["count"] == 3 and len(listed["items"]) == 3


@pytest.mark.django_db
def test_in_the_last_24_hours_the_box_its_causes_and_the_list_agree(client, samples, tmp_path):
    """Greentic steps have no start: their failures are dated by their run's (the
    file's) time. Written a couple of hours ago, they count in "last 24 h", and the
    list, a chosen cause's rows and its breakdown list exactly what the box counts
    (the list used to filter on the step's own start: "6 failed steps · 5 causes"
    above "4 failed steps", a greentic cause "1" above "No steps match")."""
    copy = tmp_path / "greentic"
    shutil.copytree(samples / "greentic", copy)
    written = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    for trace in copy.rglob("trace.json"):
        os.utime(trace, (written, written))
    ingest_paths([copy, samples / "workflow"])
    assert Step.objects.filter(status="failed", run__format="greentic", started_at=None).exists()
    response = client.get(URL, {"status": "failed", "since": "24h"})
    groups = response.context["groups"]
    assert groups.steps_read > 0
    assert response.context["count"] == groups.steps_read == len(response.context["page"].items)
    greentic = set(
        Step.objects.filter(status="failed", run__format="greentic").values_list(
            "error_cause", flat=True
        )
    )
    assert greentic <= {group.text for group in groups.groups}
    for group in groups.groups:
        chosen = client.get(URL, {"status": "failed", "since": "24h", "error_group": group.text})
        rows = chosen.context["page"].items
        assert chosen.context["count"] == len(rows) == group.count
        assert sum(n for _, n in chosen.context["breakdown"].run_types) == group.count
        assert {step.error_cause for step in rows} == {group.text}
        assert "No steps match" not in body(chosen)


# --- query counts -------------------------------------------------------------------------------


def populate(runs: int, steps_per_run: int) -> None:
    now = datetime.now(UTC)
    for index, run in enumerate(make_runs(runs, status="failed")):
        steps = make_steps(
            run, steps_per_run, status="failed",
            error=lambda n, run=run: f"timeout after {n}ms on shard {run.pk}",
        )  # fmt: skip
        for offset, step in enumerate(steps):
            step.started_at = now - timedelta(minutes=index * 7 + offset)
            step.name = f"step {offset % 5}"
        Step.objects.bulk_update(steps, ["started_at", "name"])
    recount_failure_causes()


@pytest.mark.parametrize("size", [(1, 3), (8, 40)])
@pytest.mark.django_db
def test_query_counts_do_not_grow_with_a_cause_or_a_preset(client, django_assert_num_queries, size):
    populate(*size)
    cause = "timeout after <duration> on shard <n>"
    # groups, examples, breakdown, rows, run types (the count is the cause's)
    with django_assert_num_queries(5):
        body(client.get(URL, {"status": "failed", "error_group": cause}))
    with django_assert_num_queries(6):
        body(client.get(URL, {"status": "failed", "error_group": cause, "since": "24h"}))
    # groups, examples, rows, count, run types
    with django_assert_num_queries(5):
        body(client.get(URL, {"status": "failed", "since": "1h"}))


def test_a_relative_range_from_a_midnight_is_still_read_by_slot():
    """From 00:00 to 00:10 UTC, "last 24 h" starts at yesterday's midnight: a whole-days
    range, but drawn by the hour, so read by slot (CI ran at 00:05 and got days)."""
    midnight = datetime(2026, 12, 4, tzinfo=UTC)
    assert errors.groups_source({"since": midnight}) == errors.DAYS
    assert errors.groups_source({"since": midnight, "relative": True}) == errors.SLOTS


@pytest.mark.django_db
def test_the_last_24_hours_just_after_midnight_are_drawn_by_the_hour(client, monkeypatch):
    from django.utils import timezone

    just_after = datetime.now(UTC).replace(hour=0, minute=4, second=0, microsecond=0)
    monkeypatch.setattr(timezone, "now", lambda: just_after)
    response = client.get(URL, {"status": "failed", "since": "24h"})
    assert response.context["range_since"] == just_after - timedelta(days=1, minutes=4)
    assert response.context["groups"].source == errors.SLOTS
