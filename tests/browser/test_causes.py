"""Failed steps in a real browser: choosing a cause collapses the causes table to it
and shows its breakdown by run type and step name, a time preset redraws the range,
and the way back (a link, the browser's back) brings every cause again."""

import re

from playwright.sync_api import expect

from tests.test_views_causes import recent_failures

RECENT = "upstream <n> from billing"


def test_choose_a_cause_see_its_breakdown_pick_a_preset_and_go_back(page, loaded_samples):
    recent_failures()
    page.goto("/steps/?status=failed")
    table_rows = page.locator(".groups-table tbody tr")
    every = table_rows.count()
    assert every > 3
    page.evaluate("window.__samePage = true")

    page.get_by_role("link", name=RECENT).click()
    page.wait_for_url(re.compile(r"error_group=upstream"))
    expect(table_rows).to_have_count(1)
    assert page.evaluate("window.__samePage") is True  # swapped, not reloaded
    breakdown = page.locator("#cause-breakdown")
    expect(breakdown.get_by_role("heading", name="By run type")).to_be_visible()
    expect(breakdown.get_by_role("heading", name="By step name")).to_be_visible()
    types = breakdown.locator("section").first.locator("li")
    expect(types).to_have_count(2)  # nightly and hourly, 7 each
    # Its steps are in view: the rows below are the cause's.
    expect(page.locator("#step-rows")).to_be_in_viewport()
    expect(page.locator("#step-rows tbody tr")).to_have_count(14)

    page.locator(".time-presets").get_by_role("link", name="last 24 h").click()
    page.wait_for_url(re.compile(r"since=24h"))
    assert "error_group=upstream" in page.url
    expect(table_rows).to_have_count(1)
    expect(page.locator(".groups-table thead")).to_contain_text("per hour")
    expect(types).to_have_count(1)
    expect(types.first).to_contain_text("nightly")
    expect(types.first).to_contain_text("5")
    expect(page.locator("#step-rows tbody tr")).to_have_count(5)

    # A breakdown link filters the list.
    breakdown.locator("section").first.get_by_role("link", name="nightly").click()
    page.wait_for_url(re.compile(r"run_type=nightly"))
    expect(page.locator("#step-rows tbody tr")).to_have_count(5)

    page.locator("[data-all-causes]").click()
    page.wait_for_url(lambda url: "error_group" not in url)
    # Every cause of the last 24 h: the samples' are months old.
    expect(table_rows).to_have_count(1)
    expect(page.locator("#cause-breakdown")).to_have_count(0)

    page.go_back()
    page.wait_for_url(re.compile(r"error_group=upstream"))
    expect(table_rows).to_have_count(1)
    expect(page.locator("#cause-breakdown")).to_be_visible()
    page.locator(".time-presets").get_by_role("link", name="any time").click()
    page.wait_for_url(lambda url: "since" not in url)
    page.locator("[data-all-causes]").click()
    page.wait_for_url(lambda url: "error_group" not in url)
    # The run type chosen in the breakdown still holds; any type: every cause again.
    assert "run_type=nightly" in page.url
    # The swap that pushed that URL may still be settling: a change made on the form it
    # replaces would be lost.
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
    )
    expect(page.locator("select[name=run_type]")).to_have_value("nightly")
    page.select_option("select[name=run_type]", "")
    page.wait_for_url(lambda url: "run_type" not in url)
    expect(table_rows).to_have_count(every)
