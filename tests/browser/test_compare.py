"""Comparing two runs in a real browser: tick two rows of the runs list, compare,
see the changed steps; a run page's "compare with previous" link; the summary of
two big runs arriving after the page."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from traces.ingest.records import RunRecord, StepRecord
from traces.ingest.store import write_run
from traces.models import Run

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def _run(name: str, statuses: dict[str, str], started: datetime) -> Run:
    steps = [StepRecord(key="root", name="sync", duration_ms=5000, started_at=started)]
    steps += [
        StepRecord(
            key=step, name=step, parent_key="root", status=status, duration_ms=100,
            started_at=started, error="it broke" if status == "failed" else "",
        )
        for step, status in statuses.items()
    ]  # fmt: skip
    record = RunRecord(
        format="runs", external_id=name, name=name, type="browser_compare",
        started_at=started, steps=steps, output_counters={"rows": len(statuses)},
    )  # fmt: skip
    with transaction.atomic():  # the store writes children first: keys checked at commit
        outcome = write_run(record, source_file=None, origin="")
    return Run.objects.get(pk=outcome.run_id)


@pytest.fixture
def two_runs(transactional_db):
    before = _run("before", {"fetch": "succeeded", "upsert": "succeeded"}, T0)
    after = _run(
        "after",
        {"fetch": "succeeded", "upsert": "failed", "notify": "succeeded"},
        T0 + timedelta(hours=1),
    )
    return before, after


def test_tick_two_runs_in_the_list_and_compare_them(page, two_runs):
    before, after = two_runs
    page.goto("/?type=browser_compare")
    page.check(f"input[name=run][value='{after.pk}']")
    page.check(f"input[name=run][value='{before.pk}']")
    page.click("text=Compare the two ticked runs")
    page.wait_for_url("**/compare/**")
    # The older run is A, whatever the order of the ticks.
    assert page.locator("a[data-run=a]").text_content() == "before"
    assert page.locator("a[data-run=b]").text_content() == "after"
    changed = page.locator("tr.ch-status")
    assert changed.count() == 1
    assert "upsert" in changed.text_content() and "failed" in changed.text_content()
    assert page.locator("tr.ch-added").text_content().count("notify") == 1
    summary = page.locator("#compare-summary").text_content()
    assert "1 only in B" in summary and "1 status changed" in summary
    # Changes only: the same steps go, the changed stay.
    page.click("nav.pills >> text=changes only")
    page.wait_for_url("**changes=1**")
    assert page.locator("tr.ch-same").count() == 0
    assert page.locator("tr.ch-status, tr.ch-added").count() == 2
    page.click("[data-first-divergence]")
    page.wait_for_url("**#first-divergence")
    assert page.locator("tr#first-divergence").is_visible()


def test_run_page_compares_with_the_previous_run_of_its_type(page, two_runs):
    _before, after = two_runs
    page.goto(after.get_absolute_url())
    page.click("[data-compare-previous]")
    page.wait_for_url("**/compare/**")
    assert page.locator("a[data-run=a]").text_content() == "before"
    assert page.locator("tr.ch-status").count() == 1


def test_big_runs_get_their_summary_after_the_page(page, two_runs, monkeypatch):
    before, after = two_runs
    monkeypatch.setattr("traces.queries.compare.SUMMARY_INLINE", 1)
    page.goto(f"/compare/?a={before.pk}&b={after.pk}")
    page.locator("#compare-summary", has_text="1 status changed").wait_for()
    assert page.locator("#compare-summary [data-first-divergence]").count() == 1


def test_samples_without_times_and_still_running_say_so(page, loaded_samples):
    """greentic's runs (durations, no start times) and a runs sample still running,
    each compared through the page: the notes say what their numbers mean."""
    a, b = Run.objects.filter(format="greentic").order_by("pk")[:2]
    page.goto(f"/compare/?a={a.pk}&b={b.pk}")
    assert "start times are estimated" in page.locator("[data-times-note]").text_content()
    assert page.locator("tr.ch-added, tr.ch-removed").count() > 0
    running = Run.objects.get(format="runs", status="running")
    page.goto(running.get_absolute_url())
    page.click("[data-compare-previous]")
    page.wait_for_url("**/compare/**")
    assert "Run B is still running" in page.locator("[data-running-note]").text_content()
    assert page.locator("a[data-run=b]").text_content().strip() == (running.name or "")
