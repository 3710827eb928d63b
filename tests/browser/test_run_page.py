"""The run page in a real browser: the tree expands in place, the step panel
opens beside it with its own URL, Esc closes it, tabs and pills swap."""

import re

import pytest

from traces.models import Run, Step


@pytest.fixture
def failed_sync(loaded_samples):
    return Run.objects.get(format="runs", name="sync_stripe", status="failed")


def node(step: Step) -> str:
    return f"#node-{step.pk}"


def test_open_a_run_expand_a_step_and_open_it_in_the_panel(page, failed_sync):
    page.goto("/?format=runs")
    page.click(f"a[href='{failed_sync.get_absolute_url()}']")
    page.wait_for_url(f"**{failed_sync.get_absolute_url()}")
    page.evaluate("window.__samePage = true")

    process = Step.objects.get(run=failed_sync, name="process_charges")
    children = page.locator(f"#kids-{process.pk} .tree-item")
    assert children.count() == 0
    page.click(f"{node(process)} > details > summary .toggle")
    children.first.wait_for()
    assert children.count() == 4
    assert page.evaluate("window.__samePage") is True  # swapped in, not reloaded

    failed_batch = Step.objects.get(run=failed_sync, name="upsert_batch", status="failed")
    page.click(f"{node(failed_batch)} .step-link")
    panel = page.locator("#step-panel.step-panel")
    panel.wait_for()
    assert "duplicate key value" in panel.locator(".step-error").text_content()
    assert page.url.endswith(failed_batch.get_absolute_url())
    assert page.evaluate("window.__samePage") is True
    assert page.locator(f"{node(failed_batch)} .tree-row.selected").count() == 1

    page.keyboard.press("Escape")
    page.locator("#step-panel.step-panel").wait_for(state="detached")
    assert page.url.endswith(failed_sync.get_absolute_url())


def test_timeline_tab_draws_bars_and_pushes_its_url(page, failed_sync):
    page.goto(failed_sync.get_absolute_url())
    page.get_by_role("link", name="Timeline").click()
    bars = page.locator("svg.timeline-track rect")
    bars.first.wait_for()
    assert bars.count() == failed_sync.steps.exclude(started_at=None).count()
    assert page.url.endswith("?tab=timeline")
    box = bars.first.bounding_box()
    assert box and box["width"] > 1 and box["height"] > 1
    # Hovering a row shows its tooltip.
    page.locator(".timeline-row").first.hover()
    tip = page.locator(".timeline-tip")
    tip.wait_for()
    assert "fetch_charges" in tip.text_content()


def test_failed_only_pill_keeps_failed_steps_and_their_ancestors(page, failed_sync):
    page.goto(failed_sync.get_absolute_url())
    rows = page.locator("#run-tabs .tree > .tree-item")
    assert rows.count() == 3
    page.get_by_role("link", name="✗ failed only").click()
    page.wait_for_url(re.compile(r"failed=1"))
    page.locator("#run-tabs .pill[aria-current='true']", has_text="failed only").wait_for()
    assert rows.count() == 1
    assert "process_charges" in rows.first.text_content()
    process = Step.objects.get(run=failed_sync, name="process_charges")
    page.click(f"{node(process)} > details > summary .toggle")
    inner = page.locator(f"#kids-{process.pk} .tree-item")
    inner.first.wait_for()
    assert inner.count() == 1  # only the failed batch


def test_keyboard_moves_through_rows_and_opens_a_step(page, failed_sync):
    page.goto(failed_sync.get_absolute_url())
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    panel = page.locator("#step-panel.step-panel")
    panel.wait_for()
    assert "process_charges" in panel.locator("h2").text_content()
    page.keyboard.press("Escape")
    panel.wait_for(state="detached")


def test_collapsed_rows_leave_the_keyboard_order(page, failed_sync):
    page.goto(failed_sync.get_absolute_url())
    process = Step.objects.get(run=failed_sync, name="process_charges")
    toggle = page.locator(f"{node(process)} > details > summary .toggle")
    toggle.click()
    page.locator(f"#kids-{process.pk} .tree-item").first.wait_for()
    toggle.click()  # collapse again
    page.locator(f"{node(process)} > details:not([open])").wait_for(state="attached")
    page.locator(f"{node(process)} .tree-row").first.focus()
    page.keyboard.press("j")
    # The next row in the keyboard order is the next sibling, not a hidden child
    # (polled: the key handler runs after the press returns).
    page.wait_for_function(
        "() => (document.activeElement?.textContent || '').includes('reconcile_balances')",
        timeout=5000,
    )
    assert "reconcile_balances" in page.evaluate("document.activeElement.textContent")


def test_a_running_run_header_is_live(page, loaded_samples):
    from datetime import timedelta

    from django.utils import timezone

    run = Run.objects.filter(status="running", format="runs").first()
    Run.objects.filter(pk=run.pk).update(source_updated_at=timezone.now() - timedelta(seconds=1))
    page.goto(run.get_absolute_url())
    assert page.locator("#run-header[hx-trigger]").count() == 1
    Run.objects.filter(pk=run.pk).update(status="succeeded")
    page.locator("#run-header", has_text="The run has ended").wait_for(timeout=12_000)
    assert page.locator("#run-header[hx-trigger]").count() == 0


def test_a_tree_row_reached_by_the_keyboard_shows_a_focus_ring(page, failed_sync):
    page.goto(failed_sync.get_absolute_url())
    page.keyboard.press("j")
    page.wait_for_function("document.activeElement?.matches('.tree-row')", timeout=5000)
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # the tint alone is 1.2:1 against the page
