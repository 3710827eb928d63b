"""The critical path in a real browser: its tab lists the steps on it and opens one
in the panel; the timeline marks the same steps; greentic says why there is none."""

import pytest

from traces.models import Run, Step


@pytest.fixture
def failed_sync(loaded_samples):
    return Run.objects.get(format="runs", name="sync_stripe", status="failed")


def test_the_tab_lists_the_path_and_the_timeline_highlights_it(page, failed_sync):
    on_path = list(Step.objects.filter(run=failed_sync, critical_ms__isnull=False).order_by("seq"))
    assert on_path
    page.goto(failed_sync.get_absolute_url())
    page.evaluate("window.__samePage = true")
    page.get_by_role("link", name="Critical path").click()
    rows = page.locator("tr.critical-row")
    rows.first.wait_for()
    assert page.url.endswith("?tab=critical")
    assert page.evaluate("window.__samePage") is True  # swapped in, not reloaded
    assert rows.count() == len(on_path)
    names = [text.strip() for text in rows.locator("td.c-step a").all_text_contents()]
    assert names == [step.name or step.key for step in on_path]
    share = rows.first.locator("svg.share-track rect").bounding_box()
    assert share and share["height"] > 1

    # A step of the path opens in the panel beside the list.
    rows.first.locator("td.c-step a").click()
    page.locator("#step-panel.step-panel").wait_for()
    assert page.url.endswith(f"{on_path[0].get_absolute_url()}?tab=critical")

    # The timeline marks the same steps, by a class and a sign.
    page.get_by_role("link", name="Timeline").click()
    marked = page.locator("li.timeline-row.critical")
    marked.first.wait_for()
    assert marked.count() == len(on_path)
    assert marked.locator(".t-critical").count() == len(on_path)
    unmarked = page.locator("li.timeline-row:not(.critical)")
    assert unmarked.count() == failed_sync.steps.count() - len(on_path)
    edge = marked.first.evaluate("row => getComputedStyle(row).boxShadow")
    assert edge and edge != "none"


def test_a_greentic_run_says_why_it_has_none(page, loaded_samples):
    run = Run.objects.filter(format="greentic").first()
    page.goto(f"{run.get_absolute_url()}?tab=critical")
    notice = page.locator(".critical-none")
    notice.wait_for()
    assert "estimated" in notice.text_content()
    assert page.locator("tr.critical-row").count() == 0


def test_a_running_run_shows_its_path_so_far(page, loaded_samples):
    running = Run.objects.get(format="runs", status="running")
    page.goto(f"{running.get_absolute_url()}?tab=critical")
    assert "still running" in page.locator(".critical-wrap .summary-line").text_content()
    on_path = Step.objects.filter(run=running, critical_ms__isnull=False).count()
    assert page.locator("tr.critical-row").count() == on_path > 0
