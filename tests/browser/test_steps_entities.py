"""The failed-steps and entity pages in a real browser: filters swap the rows and
push the URL, a failure cause filters the list, and an entity leads to its steps'
runs and back."""

import re

from playwright.sync_api import expect

from traces.models import EntityLink, Run, Step


def row_runs(page) -> set[str]:
    """The run format column of the rows, as shown."""
    cells = page.locator("#step-rows tbody tr td:nth-child(4) .muted").all_text_contents()
    return {cell.split("·")[0].strip() for cell in cells}


def test_filter_failed_steps_by_format_swaps_the_rows(page, loaded_samples):
    page.goto("/steps/?status=failed")
    page.evaluate("window.__samePage = true")
    assert len(row_runs(page)) > 1
    page.select_option("select[name=format]", "runs")
    page.wait_for_url(re.compile(r"format=runs"))
    expect(page.locator("#step-rows tbody tr")).to_have_count(4)
    assert row_runs(page) == {"runs"}
    assert page.evaluate("window.__samePage") is True  # swapped, not reloaded
    # The causes follow the filter too: the runs sample's 4 failures have 3 causes.
    expect(page.locator(".groups-table tbody tr")).to_have_count(3)


def test_clicking_a_cause_lists_only_its_steps(page, loaded_samples):
    page.goto("/steps/?status=failed")
    page.evaluate("window.__samePage = true")
    page.get_by_role("link", name="canceling statement due to statement timeout").click()
    page.wait_for_url(re.compile(r"error_group=canceling"))
    expect(page.locator("#step-rows tbody tr")).to_have_count(2)
    names = page.locator("#step-rows tbody tr td:nth-child(2)").all_text_contents()
    assert [name.strip() for name in names] == ["build_view", "build_view"]
    assert page.locator(".groups-table tr.selected").count() == 1
    assert page.evaluate("window.__samePage") is True
    # The chosen cause stays when another filter changes.
    page.select_option("select[name=format]", "runs")
    page.wait_for_url(re.compile(r"format=runs"))
    assert "error_group=canceling" in page.url
    # And the chip's clear button brings every cause back.
    page.get_by_role("link", name="Show every cause").click()
    page.wait_for_url(lambda url: "error_group" not in url)
    expect(page.locator("#step-rows tbody tr")).to_have_count(4)


def test_open_an_entity_follow_a_step_to_its_run_and_back(page, loaded_samples):
    page.goto("/entities/")
    page.locator(".pill", has_text="stripe_page").click()
    page.wait_for_url(re.compile(r"type=stripe_page"))
    page.get_by_role("link", name="page_1", exact=True).click()
    page.wait_for_url("**/entities/stripe_page/page_1/")
    assert "read by 3 steps" in page.locator(".entity-summary").text_content()
    rows = page.locator("#entity-links tbody tr")
    assert rows.count() == 3

    first = EntityLink.objects.filter(entity_type="stripe_page", entity_id="page_1")
    link = max(first.select_related("step"), key=lambda item: (item.created_at, item.pk))
    run = Run.objects.get(pk=link.run_id)
    rows.first.get_by_role("link", name=run.name).click()
    page.wait_for_url(f"**{run.get_absolute_url()}")
    page.go_back()
    page.wait_for_url("**/entities/stripe_page/page_1/")
    assert page.locator("#entity-links tbody tr").count() == 3

    step = Step.objects.get(pk=link.step_id)
    page.locator("#entity-links tbody tr").first.get_by_role("link", name=step.name).click()
    page.wait_for_url(f"**{step.get_absolute_url()}")
    page.go_back()
    page.wait_for_url("**/entities/stripe_page/page_1/")
    assert "read by 3 steps" in page.locator(".entity-summary").text_content()
