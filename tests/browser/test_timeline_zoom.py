"""The timeline's zoom in a real browser: the buttons, the keyboard and the minimap's
brush move the window (swapped in, the URL pushed, back restores it); folding a row
hides the steps inside it; a bar opens its step in the panel beside the timeline."""

from urllib.parse import parse_qs, urlparse

import pytest

from traces.models import Run, Step
from traces.queries.timeline import ms_between, time_axis


@pytest.fixture
def failed_sync(loaded_samples):
    return Run.objects.get(format="runs", name="sync_stripe", status="failed")


def window(page) -> tuple[float, float] | None:
    query = parse_qs(urlparse(page.url).query)
    if "from_ms" not in query:
        return None
    return float(query["from_ms"][0]), float(query["to_ms"][0])


def wait_for_window(page, check):
    page.wait_for_function(
        "() => document.querySelector('[data-minimap]') && !document.querySelector('.htmx-request')"
    )
    page.wait_for_timeout(50)
    for _ in range(100):
        if check(window(page)):
            return window(page)
        page.wait_for_timeout(50)
    raise AssertionError(f"the window did not move as expected: {page.url}")


def test_zoom_pan_brush_fold_and_open_a_step_beside(page, failed_sync):
    start, end = time_axis(failed_sync)
    span = ms_between(start, end)
    page.goto(f"{failed_sync.get_absolute_url()}?tab=timeline")
    page.evaluate("window.__samePage = true")
    minimap = page.locator("svg[data-minimap]")
    minimap.wait_for()
    assert page.locator("li.timeline-row").count() == failed_sync.steps.count()

    # Zoom in with the button: half the run, around its middle.
    page.get_by_role("link", name="+ zoom in").click()
    lo, hi = wait_for_window(page, lambda w: w is not None)
    assert hi - lo == pytest.approx(span / 2, rel=0.01)
    brush = page.locator("[data-brush]")
    assert float(brush.get_attribute("width")) == pytest.approx(500, rel=0.01)

    # Pan right, by half a window.
    page.locator("a[data-zoom='right']").click()
    lo2, _ = wait_for_window(page, lambda w: w is not None and w[0] > lo)
    assert lo2 == pytest.approx(min(lo + span / 4, span / 2), rel=0.01)

    # Back restores the previous window, then forward again.
    page.go_back()
    assert wait_for_window(page, lambda w: w is not None and w[0] == pytest.approx(lo))

    # The keyboard: 0 the whole run, w zoom in.
    page.locator("body").press("0")
    wait_for_window(page, lambda w: w is None)
    page.locator("body").press("w")
    wait_for_window(page, lambda w: w is not None)

    # The brush: drag over the minimap from 10 % to 40 % of the run.
    box = minimap.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.1, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.25, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * 0.4, y, steps=4)
    page.mouse.up()
    lo, hi = wait_for_window(
        page, lambda w: w is not None and w[1] - w[0] == pytest.approx(0.3 * span, rel=0.05)
    )
    assert lo == pytest.approx(0.1 * span, abs=0.01 * span)
    assert page.evaluate("window.__samePage") is True  # all swapped in, never reloaded
    rows = page.locator("li.timeline-row")
    assert 0 < rows.count() <= failed_sync.steps.count()

    # Fold a subtree: back to the whole run, fold the first row holding steps.
    page.get_by_role("link", name="whole run").click()
    wait_for_window(page, lambda w: w is None)
    holder = Step.objects.filter(run=failed_sync, child_count__gt=0).order_by("started_at").first()
    row = page.locator(f"li.timeline-row[data-key='{holder.key}']")
    inside = page.locator(f"li.timeline-row[data-parent='{holder.key}']")
    assert inside.count() == holder.child_count and inside.first.is_visible()
    fold = row.locator("button[data-fold]")
    assert fold.get_attribute("aria-expanded") == "true"
    fold.click()
    assert fold.get_attribute("aria-expanded") == "false"
    assert all(not inside.nth(i).is_visible() for i in range(inside.count()))
    visible = sum(1 for i in range(rows.count()) if rows.nth(i).is_visible())
    assert visible == failed_sync.steps.count() - holder.child_count
    fold.click()
    assert inside.first.is_visible()

    # A click on a bar opens the step in the panel beside the timeline, not below it.
    leaf = row.locator("svg.timeline-track")
    leaf.click()
    panel = page.locator("#step-panel.step-panel")
    panel.wait_for()
    assert holder.name in panel.locator("h2").text_content()
    timeline_box = page.locator(".timeline-wrap").bounding_box()
    panel_box = panel.bounding_box()
    assert panel_box["x"] >= timeline_box["x"] + timeline_box["width"] - 1
    assert panel_box["y"] < timeline_box["y"] + timeline_box["height"]
    assert f"{holder.get_absolute_url()}?tab=timeline" in page.url


def test_a_greentic_run_says_why_there_is_no_zoom(page, loaded_samples):
    run = Run.objects.filter(format="greentic").first()
    page.goto(f"{run.get_absolute_url()}?tab=timeline")
    page.locator(".timeline-note").wait_for()
    assert "No time axis to zoom" in page.locator(".timeline-note").text_content()
    assert page.locator("svg[data-minimap]").count() == 0
