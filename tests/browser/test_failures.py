"""Failures that cannot hide, in a real browser: a step whose items failed (its row,
"failed only", the header's failed steps vs failed items, the failing-now strip), a
run failed by its source alone, a workflow run stopped by a cancel, and numbers
that agree with the lists their filters give."""

from __future__ import annotations

import re
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from tests.test_views_run_header_compare import ingest_a_cancelled_workflow_run
from traces.ingest import store
from traces.ingest.records import RunRecord, StepRecord
from traces.models import Run, Step


def succeeded_sync() -> Run:
    return Run.objects.get(format="runs", type="sync_stripe", status="succeeded")


def counts(page):
    return page.locator("#run-header .facts b.counts")


def test_a_step_with_failed_items_shows_them_and_is_kept_by_failed_only(page, loaded_samples):
    run = succeeded_sync()
    process = Step.objects.get(run=run, name="process_charges")
    assert (process.status, process.items_failed, run.steps_failed) == ("succeeded", 2, 0)
    page.goto(run.get_absolute_url())
    # The header: no failed step, 2 failed items, each labelled.
    expect(counts(page).locator("[title='failed steps']")).to_have_count(0)
    items = counts(page).locator("[title^='items that failed inside its steps']")
    expect(items).to_have_text("✗ 2 items")
    # Its row says so, though the step's own status is succeeded.
    row = page.locator(f"#node-{process.pk} .tree-row").first
    expect(row.locator(".badge")).to_contain_text("succeeded")
    expect(row.locator("[title^='items failed in this step']")).to_have_text("✗ 2 items")
    # "Failed only" keeps it.
    page.get_by_role("link", name="✗ failed only").click()
    page.wait_for_url(re.compile(r"failed=1"))
    rows = page.locator("#run-tabs .tree > .tree-item")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("process_charges")
    expect(page.locator("#run-tabs")).not_to_contain_text("No step failed")


def test_the_header_tells_failed_steps_from_failed_items(page, loaded_samples):
    run = Run.objects.get(format="runs", type="sync_stripe", status="failed")
    page.goto(run.get_absolute_url())
    expect(counts(page).locator("[title='failed steps']")).to_have_text(f"✗ {run.steps_failed}")
    expect(counts(page).locator("[title^='items that failed']")).to_have_text(
        f"✗ {run.steps_items_failed} items"
    )


def test_failing_now_counts_a_succeeded_runs_failed_items_and_links_them(page, loaded_samples):
    run = succeeded_sync()
    Run.objects.exclude(pk=run.pk).update(started_at=timezone.now() - timedelta(days=3))
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    page.goto("/")
    strip = page.get_by_role("region", name="Failing now")
    expect(strip.get_by_role("columnheader", name="Failed items, last 1 h")).to_be_visible()
    row = strip.get_by_role("row", name=re.compile("sync_stripe"))
    link = row.get_by_role("link", name=re.compile(r"✗ 2 items in 1 run")).first
    link.click()
    page.wait_for_url(re.compile(r"status=items"))
    names = page.locator("#run-rows td.name > a")
    expect(names).to_have_count(1)
    assert page.locator("#run-rows td.name > a").get_attribute("href") == run.get_absolute_url()


def test_a_run_failed_by_its_source_alone_says_so(page, loaded_samples):
    record = RunRecord(
        format="otlp", external_id="quiet", name="quiet failure", type="nightly",
        status="failed", raw_status="ERROR", started_at=timezone.now(),
        steps=[StepRecord(key="a", name="load", duration_ms=5.0)],
    )  # fmt: skip
    with transaction.atomic():  # as the loader writes a file's runs
        outcome = store.write_run(record, source_file=None, origin="")
    run = Run.objects.get(pk=outcome.run_id)
    page.goto(run.get_absolute_url())
    header = page.locator("#run-header")
    expect(header.locator(".badge.failed")).to_be_visible()
    expect(header.get_by_title("the source's own word")).to_have_text("(ERROR)")
    expect(header.locator("p.notice")).to_have_text(
        "The source marked this run failed (its own status: ERROR); "
        "no step failed or recorded an error."
    )


def test_a_workflow_run_stopped_by_a_cancel_is_shown_cancelled(
    page, transactional_db, samples, tmp_path
):
    run = ingest_a_cancelled_workflow_run(samples, tmp_path)
    page.goto("/?format=workflow&status=cancelled")
    names = page.locator("#run-rows td.name > a")
    expect(names).to_have_count(1)
    expect(page.locator("#run-rows tbody tr").first.locator(".badge")).to_contain_text("cancelled")
    names.first.click()
    page.wait_for_url(f"**{run.get_absolute_url()}")
    header = page.locator("#run-header")
    expect(header.locator(".badge.cancelled")).to_be_visible()
    expect(header.get_by_title("the source's own word")).to_have_text("(failed)")
    expect(header.get_by_role("note", name="Run error")).to_contain_text("context canceled")


def test_the_numbers_agree_with_what_their_filters_list(page, loaded_samples):
    # The runs list: "n failed" is what the failed filter lists.
    page.goto("/?format=runs")
    summary = page.locator("#run-rows .summary-line")
    failed = int(re.search(r"(\d+) failed", summary.text_content()).group(1))
    total = int(re.search(r"(\d+) runs?", summary.text_content()).group(1))
    expect(page.locator("#run-rows td.name > a")).to_have_count(total)
    page.locator("form.filters select[name=status]").select_option("failed")
    page.wait_for_url(re.compile(r"status=failed"))
    expect(page.locator("#run-rows td.name > a")).to_have_count(failed)
    # A run's header: its step count is the timeline's rows; its failed steps, the
    # failed rows "failed only" shows once opened.
    run = Run.objects.get(format="runs", type="sync_stripe", status="failed")
    page.goto(f"{run.get_absolute_url()}?tab=timeline")
    step_count = int(counts(page).locator("span").first.text_content().replace(",", ""))
    expect(page.locator("li.timeline-row")).to_have_count(step_count)
    page.goto(f"{run.get_absolute_url()}?failed=1")
    for holder in page.locator("#run-tabs details.tree-node:not([open]) > summary .toggle").all():
        holder.click()
    failed_rows = page.locator("#run-tabs .tree-item.is-failed")
    expect(failed_rows).to_have_count(run.steps_failed)
