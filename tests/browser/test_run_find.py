"""Find in run in a real browser: typing finds (the count, the matches under their
parents), Enter and the buttons step through the matches into the next window, and
the URL keeps the find for a reload."""

import pytest
from django.db import OperationalError
from playwright.sync_api import expect

from tests.browser.conftest import watched_page
from tests.test_views_run_find import deep_run
from traces import queries


def test_typing_finds_and_enter_steps_through_the_matches(page, transactional_db):
    run = deep_run(depth=8, siblings=40, matches=120)
    page.goto(run.get_absolute_url())
    page.keyboard.press("f")
    expect(page.locator("#run-find")).to_be_focused()
    page.keyboard.type("needle")
    status = page.locator("#find-status")
    expect(status).to_have_text("120 matches")
    page.wait_for_url("**find=needle**")
    matches = page.locator(".tree-item.find-match")
    expect(matches).to_have_count(50)
    # The matches sit 8 levels down: every one of them is on screen, not collapsed.
    expect(matches.first).to_be_visible()
    expect(page.locator(".tree-item.find-context")).to_have_count(8)
    expect(page.locator("#run-find")).to_be_focused()
    page.keyboard.press("Enter")
    expect(status).to_have_text("match 1 of 120")
    page.keyboard.press("Enter")
    expect(status).to_have_text("match 2 of 120")
    expect(page.locator(".find-current")).to_have_count(1)
    page.keyboard.press("Shift+Enter")
    expect(status).to_have_text("match 1 of 120")
    # Past the window's last match: the next window, and its first match.
    next_button = page.get_by_role("button", name="Next match")
    for _ in range(50):
        next_button.click()
    expect(status).to_have_text("match 51 of 120")
    page.wait_for_url("**find_at=50**")
    expect(page.locator(".find-current")).to_contain_text("needle_50")
    # A reload keeps the find.
    page.reload()
    expect(page.locator("#run-find")).to_have_value("needle")
    expect(page.locator("#find-status")).to_have_text("120 matches")
    expect(page.locator(".tree-item.find-match").first).to_contain_text("needle_50")
    # Clearing it shows the whole tree again.
    page.get_by_role("link", name="Clear the find").click()
    expect(page.locator(".tree-item.find-match")).to_have_count(0)
    expect(page.locator("#run-find")).to_have_value("")


def test_the_timeline_shows_only_the_matches(page, transactional_db):
    run = deep_run(depth=3, siblings=20, matches=5)
    page.goto(f"{run.get_absolute_url()}?tab=timeline")
    page.fill("#run-find", "needle")
    expect(page.locator("#find-status")).to_have_text("5 matches")
    page.get_by_role("link", name="show only the matches").click()
    expect(page.locator(".timeline-row")).to_have_count(5)
    expect(page.locator(".timeline-row.find-match")).to_have_count(5)
    page.keyboard.press("n")
    expect(page.locator("#find-status")).to_contain_text("match 1 of 5")


@pytest.fixture
def page_refused(browser, live_server):
    """A watched page where the browser's line for a refused (400) load is expected."""
    yield from watched_page(
        browser, live_server, {"width": 1400, "height": 900}, expected=lambda text: "400" in text
    )


def test_a_bad_find_says_why_and_keeps_the_page(page_refused, transactional_db):
    page = page_refused
    run = deep_run(depth=3, siblings=5, matches=2)
    page.goto(f"{run.get_absolute_url()}?find=needle")
    page.fill("#run-find", "status:nope")
    expect(page.locator("#flash")).to_contain_text("status:nope is not a status")
    expect(page.locator(".tree-item.find-match")).to_have_count(2)


def test_the_find_bar_fits_a_phone(page, transactional_db):
    run = deep_run(depth=4, siblings=5, matches=3)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{run.get_absolute_url()}?find=needle")
    box = page.locator("#run-find").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
    expect(page.locator(".tree-item.find-match")).to_have_count(3)


@pytest.mark.parametrize("width", [390, 320, 1400])
def test_the_find_box_and_its_buttons_stay_together(page, transactional_db, width):
    """The box, "↑" and "↓" on one line, in that order, inside the page: at 390 px "↓"
    used to drop to the next line beside the count, away from "↑"."""
    run = deep_run(depth=4, siblings=5, matches=3)
    page.set_viewport_size({"width": width, "height": 844})
    page.goto(f"{run.get_absolute_url()}?find=needle")
    expect(page.locator("#find-status")).to_contain_text("3 matches")
    # Measured together once the page's own fragments have come: measured one by one,
    # a fragment swapped in above the bar between two reads moved the later ones
    # (a CI run saw the buttons 63 px below the box they sit beside).
    page.wait_for_load_state("networkidle")
    box, up, down = page.evaluate(
        """() => ["#run-find", '[aria-label="Previous match"]', '[aria-label="Next match"]']
            .map(selector => document.querySelector(selector).getBoundingClientRect())
            .map(({x, y, width, height}) => ({x, y, width, height}))"""
    )
    middles = [item["y"] + item["height"] / 2 for item in (box, up, down)]
    assert max(middles) - min(middles) <= 2, (box, up, down)
    assert box["x"] + box["width"] <= up["x"] < up["x"] + up["width"] <= down["x"]
    assert down["x"] - (up["x"] + up["width"]) <= 12
    assert box["x"] >= 0 and down["x"] + down["width"] <= width
    assert box["width"] >= 120, box  # still a box to type in
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width


@pytest.fixture
def page_busy(browser, live_server):
    """A watched page where the browser's line for a 503 load is expected."""
    yield from watched_page(
        browser, live_server, {"width": 1400, "height": 900}, expected=lambda text: "503" in text
    )


def test_a_find_the_busy_database_refused_says_so_and_keeps_the_page(
    page_busy, transactional_db, monkeypatch
):
    """The middleware's 503 for an htmx request (retargeted to #flash) is swapped into
    the flash area, as a 400's is (htmx swaps no 5xx by itself: the request would end
    with nothing shown); its Try again link is the page's, not the fragment's."""
    page = page_busy
    run = deep_run(depth=3, siblings=5, matches=2)
    page.goto(run.get_absolute_url())
    items = page.locator(".tree-item").count()

    def busy(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(queries.find, "count", busy)
    page.fill("#run-find", "needle")
    flash = page.locator("#flash")
    expect(flash).to_contain_text("The database is busy")
    expect(flash.get_by_role("link", name="Try again")).to_have_attribute(
        "href", run.get_absolute_url()
    )
    expect(page.locator(".tree-item")).to_have_count(items)
