"""The failure pages on a phone (390 x 844): the failing-now strip with failed runs
and failed items, the failed steps page with a cause chosen, and a zoomed timeline.
Nothing wider than the screen, the controls reachable and tappable."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import PHONE
from tests.test_views_causes import recent_failures
from traces.models import Run


def assert_fits(phone):
    width = phone.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE["width"], f"{phone.url}: {width} px wide"


def test_failing_now_on_a_phone(phone, loaded_samples):
    now = timezone.now()
    Run.objects.filter(format="runs").update(started_at=now - timedelta(minutes=30))
    phone.goto("/")
    strip = phone.get_by_role("region", name="Failing now")
    expect(strip).to_be_visible()
    assert_fits(phone)
    # Failed runs and failed items, each a link that fits the screen.
    row = strip.get_by_role("row", name=re.compile("sync_stripe"))
    runs_link = row.get_by_role("link", name="✗ 1").first
    items_link = row.get_by_role("link", name=re.compile(r"items in \d+ runs?")).first
    # The whole table fits: no column hides off the screen's edge.
    table = strip.locator("table.failing-table")
    assert table.evaluate("t => t.scrollWidth <= t.clientWidth + 1")
    # Each run type on one line: in a column beside four numbers "materialize_view"
    # broke letter by letter ("materializ" / "e_view").
    names = table.locator("tbody th[scope=row]")
    assert names.count() >= 2
    lines = names.evaluate_all(
        """ths => ths.map(th => { const range = document.createRange();
            range.selectNodeContents(th);
            return [th.textContent, range.getClientRects().length]; })"""
    )
    assert all(count == 1 for _, count in lines), lines
    for link in (runs_link, items_link):
        box = link.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    items_link.click()
    phone.wait_for_url(re.compile(r"status=items"))
    expect(phone.locator("#run-rows td.name > a, #run-rows .name a").first).to_be_visible()
    assert_fits(phone)


def test_failed_steps_with_a_chosen_cause_on_a_phone(phone, loaded_samples):
    recent_failures()
    phone.goto("/steps/?status=failed")
    assert_fits(phone)
    phone.get_by_role("link", name="upstream <n> from billing").click()
    phone.wait_for_url(re.compile(r"error_group=upstream"))
    expect(phone.locator(".groups-table tbody tr")).to_have_count(1)
    breakdown = phone.locator("#cause-breakdown")
    expect(breakdown.get_by_role("heading", name="By run type")).to_be_visible()
    expect(phone.locator("#step-rows")).to_be_in_viewport()
    assert_fits(phone)
    # The presets sit with the filters, behind their button on a phone.
    toggle = phone.locator("details.filter-toggle > summary")
    if toggle.is_visible():
        toggle.click()
    phone.locator(".time-presets").get_by_role("link", name="last 24 h").click()
    phone.wait_for_url(re.compile(r"since=24h"))
    expect(phone.locator("#step-rows tbody tr")).to_have_count(5)
    assert_fits(phone)


def test_a_zoomed_timeline_on_a_phone(phone, loaded_samples):
    run = Run.objects.get(format="runs", name="sync_stripe", status="failed")
    phone.goto(f"{run.get_absolute_url()}?tab=timeline")
    minimap = phone.locator("svg[data-minimap]")
    minimap.wait_for()
    assert_fits(phone)
    zoom = phone.get_by_role("link", name="+ zoom in")
    box = zoom.bounding_box()
    assert box and box["x"] + box["width"] <= PHONE["width"]
    zoom.click()
    phone.wait_for_url(re.compile(r"from_ms="))
    phone.wait_for_function("() => !document.querySelector('.htmx-request')")
    expect(phone.locator("[data-brush]")).to_be_attached()
    box = minimap.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert phone.locator("li.timeline-row").count() > 0
    assert_fits(phone)
