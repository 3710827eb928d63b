"""The failing-now strip's failed steps of runs whose times are estimated (greentic: a
step has no start, its failure is dated by its run's time, the file's): counted apart
("+n ≈") from the timed ones, each number a link to the failed-steps list of its
times, which lists what it counts; on a desktop and on a phone."""

from __future__ import annotations

import os
import re
import shutil
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import PHONE, assert_no_sideways_scroll
from tests.factories import make_runs, make_steps
from traces.ingest.loader import ingest_paths
from traces.models import Run, Step


@pytest.fixture
def copied_failures(transactional_db, samples, tmp_path):
    """The greentic samples copied ten minutes ago (their failed steps dated by the
    files' time), and a timed failed step twenty minutes ago. Returns the number of
    the greentic failed steps."""
    folder = tmp_path / "greentic"
    shutil.copytree(samples / "greentic", folder)
    written = time.time() - 600
    for path in folder.rglob("*.json"):
        os.utime(path, (written, written))
    assert ingest_paths([folder]).failed == []
    (run,) = make_runs(1, status="failed", type="nightly")
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=20))
    (step,) = make_steps(run, 1, status="failed", error="timed boom")
    at = timezone.now() - timedelta(minutes=20)
    Step.objects.filter(pk=step.pk).update(started_at=at, failed_at=at)
    estimated = Step.objects.filter(run__times_estimated=True, status="failed", synthetic=False)
    assert estimated.exists()
    return estimated.count()


def test_estimated_failed_steps_are_counted_apart_and_link_what_they_count(page, copied_failures):
    page.goto("/")
    steps = page.get_by_role("region", name="Failing now").locator("p.failing-steps")
    recorded = steps.get_by_role("link", name="1 in the last hour")
    estimated = steps.locator("a.estimated-count").first
    expect(recorded).to_be_visible()
    expect(estimated).to_have_text(f"+{copied_failures} ≈")
    assert "of runs with estimated times" in estimated.get_attribute("title")
    estimated.click()
    page.wait_for_url(re.compile(r"/steps/\?status=failed&since=1h&times=estimated"))
    expect(page.locator("select[name=times]")).to_have_value("estimated")
    expect(page.locator("#step-rows tr[data-row]")).to_have_count(copied_failures)
    box = page.get_by_role("heading", name=re.compile("Failure causes"))
    expect(box).to_contain_text(f"{copied_failures} failed step")
    page.go_back()
    page.get_by_role("region", name="Failing now").get_by_role(
        "link", name="1 in the last hour"
    ).click()
    page.wait_for_url(re.compile(r"times=recorded"))
    expect(page.locator("#step-rows tr[data-row]")).to_have_count(1)
    expect(page.locator("#step-rows")).to_contain_text("timed boom")


def test_estimated_failed_steps_on_a_phone(phone, copied_failures):
    phone.goto("/")
    steps = phone.get_by_role("region", name="Failing now").locator("p.failing-steps")
    expect(steps).to_be_visible()
    assert_no_sideways_scroll(phone)
    for link in steps.get_by_role("link").all():
        box = link.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        # Each count on one line ("1 in the last 24" / "h" broke it).
        lines = link.evaluate(
            "a => new Set([...a.getClientRects()].map(r => Math.round(r.bottom))).size"
        )
        assert lines == 1, f"{link.text_content()!r} on {lines} lines"
    # Muted as the runs' "+n ≈" beside it, not a link's blue.
    color = "a => getComputedStyle(a).color"
    table_count = phone.locator("table.failing-table a.estimated-count").first
    assert steps.locator("a.estimated-count").first.evaluate(color) == table_count.evaluate(color)
    steps.locator("a.estimated-count").first.click()
    phone.wait_for_url(re.compile(r"times=estimated"))
    assert_no_sideways_scroll(phone)
