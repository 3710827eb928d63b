"""Run types in a real browser: from the runs list to a type's trends (its SVG charts,
their table, a bar leading to its runs), and a run page's comparison with its type."""

import re

from playwright.sync_api import expect

from traces.models import Run


def test_open_a_type_from_the_runs_list_and_read_its_charts(page, loaded_samples):
    page.goto("/?type=sync_stripe")
    page.locator("#run-rows tbody tr").first.locator('a[title="trends of this type"]').click()
    page.wait_for_url(re.compile(r"/types/sync_stripe/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("sync_stripe")
    charts = page.get_by_role("img")
    expect(charts).to_have_count(3)
    expect(page.get_by_role("img", name=re.compile("Runs per day by status"))).to_be_visible()
    # Coloured by the static stylesheet (no inline style under the CSP).
    fill = page.locator("svg rect.bar-succeeded").first.evaluate("el => getComputedStyle(el).fill")
    assert fill not in ("", "none", "rgb(0, 0, 0)")
    # The table behind the charts.
    page.get_by_text("The numbers behind the charts").click()
    table = page.locator(".chart-data table")
    expect(table).to_be_visible()
    runs = Run.objects.filter(type="sync_stripe").count()
    cells = table.locator("tbody tr td:nth-child(2)").all_text_contents()
    assert sum(int(cell.replace(",", "")) for cell in cells) == runs
    # A bar leads to the runs of its day.
    page.locator("svg a.bar").first.click()
    page.wait_for_url(re.compile(r"type=sync_stripe.*since="))
    expect(page.locator("#run-rows tbody tr").first).to_be_visible()


def test_a_run_page_says_how_its_duration_compares(page, loaded_samples):
    run = Run.objects.filter(type="sync_stripe", status="succeeded").first()
    page.goto(run.get_absolute_url())
    compare = page.locator(".type-compare")
    expect(compare).to_contain_text("the p50 of sync_stripe")
    compare.get_by_role("link", name="sync_stripe").click()
    page.wait_for_url(re.compile(r"/types/sync_stripe/\?format=runs"))
    expect(page.get_by_role("img")).to_have_count(3)
