"""The timeline's folds live in the URL: a reload, and the same link opened
elsewhere (another browser's session), and a zoom's swap keep them; unfolding
takes them out."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import expect

from tests.browser.conftest import watched_page
from traces.models import Run, Step


def folds_in_url(page) -> list[str]:
    return parse_qs(urlparse(page.url).query).get("fold", [])


def test_folds_are_kept_in_the_url(page, loaded_samples, browser, live_server):
    run = Run.objects.get(format="runs", name="sync_stripe", status="failed")
    holder = Step.objects.filter(run=run, child_count__gt=0).order_by("started_at").first()
    page.goto(f"{run.get_absolute_url()}?tab=timeline")
    row = page.locator(f"li.timeline-row[data-key='{holder.key}']")
    inside = page.locator(f"li.timeline-row[data-parent='{holder.key}']")
    fold = row.locator("button[data-fold]")
    fold.click()
    expect(fold).to_have_attribute("aria-expanded", "false")
    assert folds_in_url(page) == [holder.key]
    # A reload keeps it.
    page.reload()
    expect(fold).to_have_attribute("aria-expanded", "false")
    expect(inside.first).to_be_hidden()
    # So does the link, opened in another browser context (no session of its own).
    link = page.url
    for other in watched_page(browser, live_server, {"width": 1200, "height": 800}):
        other.goto(link)
        expect(other.locator(f"li.timeline-row[data-parent='{holder.key}']").first).to_be_hidden()
        expect(
            other.locator(f"li.timeline-row[data-key='{holder.key}'] button[data-fold]")
        ).to_have_attribute("aria-expanded", "false")
    # A zoom swaps the timeline and pushes its URL: the fold goes back into it.
    page.get_by_role("link", name="+ zoom in").click()
    page.wait_for_url(re.compile(r"from_ms="))
    page.wait_for_function("() => new URL(location.href).searchParams.has('fold')")
    assert folds_in_url(page) == [holder.key]
    page.get_by_role("link", name="whole run").click()
    page.wait_for_url(lambda url: "from_ms" not in url and "fold=" in url)
    fold = page.locator(f"li.timeline-row[data-key='{holder.key}'] button[data-fold]")
    fold.click()
    expect(fold).to_have_attribute("aria-expanded", "true")
    assert folds_in_url(page) == []
    expect(inside.first).to_be_visible()
