"""The logs in a real browser: the run's Logs tab (a step picked by name from the
picker's list, words of a line, millisecond times, the next page) and /logs/ across
runs (without words, with words, with a filter, a line followed to its run, and on
a phone)."""

import pytest
from playwright.sync_api import expect

from tests.test_views_run_detail import add_logs, add_steps, make_run
from traces.models import LogEntry, Run, Step


@pytest.fixture
def logged_run(transactional_db):
    """A run of 450 lines (three windows): lines 3-6 are step `upsert_batch` #1's,
    lines 300-301 #2's (two steps of that name), one in ten is an error."""
    run = make_run(name="nightly import")
    steps = add_steps(run, 3)
    Step.objects.filter(pk__in=[steps[0].pk, steps[2].pk]).update(name="upsert_batch")
    Step.objects.filter(pk=steps[1].pk).update(name="load")
    add_logs(run, 450)
    LogEntry.objects.filter(run=run, seq__in=[3, 4, 5, 6]).update(step=steps[0])
    LogEntry.objects.filter(run=run, seq__in=[301, 302]).update(step=steps[2])
    Run.objects.filter(pk=run.pk).update(log_count=450)
    return run


def rows(page):
    return page.locator("#log-rows tbody tr[data-row]")


def test_the_logs_tab_picks_a_step_by_name_searches_words_and_pages(page, logged_run):
    page.goto(f"/runs/{logged_run.pk}/logs/")
    expect(rows(page)).to_have_count(200)
    # Millisecond times: line 1 is 1 ms after line 0.
    expect(rows(page).nth(1).locator("td").first).to_contain_text("12:00:00.001")
    # The picker offers the run's names, with line 300's step among them (not on this page).
    names = page.locator("#log-step-names option")
    assert names.evaluate_all("options => options.map(o => o.value)") == ["upsert_batch", "load"]
    expect(names.first).to_have_text("6 lines · 2 steps")
    form = page.locator("section.logs form")
    step = form.get_by_role("combobox", name="Step")
    step.fill("upsert_batch")
    step.press("Enter")
    expect(page.locator("#log-rows")).to_contain_text("Lines of step upsert_batch.")
    expect(rows(page)).to_have_count(6)  # both steps of that name
    assert "step=upsert_batch" in page.url
    # A name the run lacks: said beside the rows, with the names like it; no error.
    step.fill("upsert")
    step.press("Enter")
    expect(page.locator("#log-rows")).to_contain_text("This run has no step named or keyed")
    page.locator("#log-rows").get_by_role("link", name="upsert_batch").click()
    expect(rows(page)).to_have_count(6)
    expect(page.locator("#flash")).to_be_empty()
    # Words of a line, as they are typed.
    step.fill("")
    step.press("Enter")
    expect(rows(page)).to_have_count(200)
    form.get_by_label("Message").fill("line 123")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("line 123")
    form.get_by_label("Message").fill("")
    expect(rows(page)).to_have_count(200)
    # The next page.
    page.get_by_role("link", name="later lines").click()
    expect(rows(page).first).to_contain_text("line 200")
    expect(rows(page)).to_have_count(200)
    expect(page.locator("#log-rows")).to_contain_text("450 lines in this run, all listed.")


def test_the_log_search_lists_the_newest_lines_then_words_then_a_filter(page, loaded_samples):
    newest = LogEntry.objects.order_by("-pk").first()
    page.goto("/logs/")
    form = page.locator("form.filters")
    expect(page.get_by_role("status")).to_contain_text("newest first")
    table = page.locator("table.log-table tbody tr")
    expect(table).to_have_count(50)
    expect(table.first).to_contain_text(newest.message[:40])
    # Words.
    form.get_by_label("Message").fill("completed")
    form.get_by_role("button", name="Search").click()
    page.wait_for_url("**/logs/?q=completed*")
    expect(page.get_by_role("status")).to_contain_text("match “completed”")
    for text in table.locator(".log-message").all_text_contents()[:10]:
        assert "completed" in text.lower()
    # A filter, without words.
    form.get_by_label("Message").fill("")
    form.get_by_label("Level").fill("error")
    form.get_by_role("button", name="Search").click()
    page.wait_for_url("**/logs/?*level=error*")
    errors = LogEntry.objects.filter(level="error").count()
    expect(table).to_have_count(min(errors, 50))
    for badge in table.locator("td:nth-child(2) .badge").all_text_contents():
        assert badge == "error"
    # A line followed to its run's logs.
    first = table.first
    run_name = first.locator("td:nth-child(3) a").text_content().strip()
    first.locator("td:nth-child(3) a").click()
    page.wait_for_url("**/runs/*/?tab=logs")
    expect(page.locator("h1").first).to_contain_text(run_name)
    expect(page.locator("#log-rows")).to_be_visible()


def test_the_log_search_fits_a_phone(phone, loaded_samples):
    for url in ("/logs/", "/logs/?q=completed&level=info"):
        phone.goto(url)
        width = phone.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, f"{url} is {width} px wide"
        expect(phone.locator("table.log-table tbody tr").first).to_be_visible()
    # The filters sit behind "Filters (n)" once words are searched.
    toggle = phone.locator("details.filter-toggle > summary")
    expect(toggle).to_contain_text("Filters (2)")
    toggle.click()
    expect(phone.locator("form.filters").get_by_label("Level")).to_be_visible()
