"""Every page on a phone (390 x 844): nothing wider than the screen, a compact header
that scrolls away, the filters behind a "Filters (n)" button, the runs as cards."""

from datetime import timedelta

from django.utils import timezone

from tests.browser.conftest import PHONE
from traces.models import Run


def pages() -> list[str]:
    """One URL of each page, found from the samples."""
    run = Run.objects.filter(format="runs", steps_failed__gt=0).order_by("pk").first()
    big = Run.objects.order_by("-step_count", "pk").first()
    return [
        "/",
        "/?status=failed",
        f"/runs/{run.pk}/",
        f"/runs/{big.pk}/?tab=timeline",
        f"/runs/{big.pk}/?tab=logs",
        f"/runs/{run.pk}/?tab=critical",
        "/steps/?status=failed",
        "/entities/",
        "/search/?q=sync_stripe&jump=no",
        "/logs/?q=step",
        "/types/",
        f"/types/{run.type}/",
        "/files/",
        "/sources/",
        "/upload/",
    ]


def test_no_page_is_wider_than_the_phone(phone, loaded_samples):
    wider = {}
    for url in pages():
        phone.goto(url)
        width = phone.evaluate("document.scrollingElement.scrollWidth")
        if width > PHONE["width"]:
            wider[url] = width
    assert wider == {}


def test_the_header_is_compact_and_scrolls_away(phone, loaded_samples):
    for url in ["/", "/steps/?status=failed", "/sources/"]:
        phone.goto(url)
        header = phone.locator("header.topbar")
        assert header.evaluate("h => getComputedStyle(h).position") not in ("sticky", "fixed")
        assert header.bounding_box()["height"] <= 80, url
    # Every section stays one tap away: the nav scrolls sideways within the header.
    phone.goto("/")
    phone.get_by_role("navigation", name="Main").get_by_role("link", name="Upload").click()
    phone.wait_for_url("**/upload/")
    phone.goto("/")
    phone.mouse.wheel(0, 600)
    phone.wait_for_function("window.scrollY > 300")
    assert phone.locator("header.topbar").bounding_box()["y"] < 0  # gone with the page


def test_names_wrap_between_words_not_letter_by_letter(phone, loaded_samples):
    phone.goto("/steps/?status=failed")
    # A cell never narrower than a few characters: the old tables squeezed names to one.
    narrowest = phone.evaluate(
        "Math.min(...Array.from(document.querySelectorAll('td.name'))"
        ".filter(td => td.offsetParent).map(td => td.getBoundingClientRect().width))"
    )
    assert narrowest >= 100


def test_filters_hide_behind_a_button_that_counts_them(phone, loaded_samples):
    phone.goto("/?status=failed&format=runs&sort=name")
    toggle = phone.locator("details.filter-toggle > summary")
    status = phone.locator("form.filters select[name=status]")
    assert toggle.text_content().split() == ["Filters", "(2)"]  # the sort is no filter
    assert not status.is_visible()
    toggle.click()
    assert status.is_visible()

    phone.select_option("form.filters select[name=format]", "")
    assert toggle.text_content().split() == ["Filters", "(1)"]
    phone.wait_for_url(lambda url: "format=" not in url)
    phone.fill("form.filters input[name=q]", "sync")
    assert toggle.text_content().split() == ["Filters", "(2)"]
    toggle.click()
    assert not status.is_visible()


def test_every_filtered_page_has_the_button(phone, loaded_samples):
    for url in ["/steps/?status=failed", "/types/", "/logs/?q=step"]:
        phone.goto(url)
        assert phone.locator("details.filter-toggle > summary").is_visible(), url
    phone.goto("/steps/?status=failed")
    assert "(1)" in phone.locator("details.filter-toggle > summary").text_content()


def test_wide_screens_show_the_filters_without_the_button(page, loaded_samples):
    page.goto("/?status=failed")
    assert not page.locator("details.filter-toggle > summary").is_visible()
    assert page.locator("form.filters select[name=status]").is_visible()
    assert page.locator("table.runs-table thead").is_visible()


def test_runs_are_cards(phone, loaded_samples):
    phone.goto("/")
    row = phone.locator("table.runs-table tbody tr").first
    assert row.evaluate("r => getComputedStyle(r).display") == "grid"
    assert phone.locator("table.runs-table thead").bounding_box()["height"] <= 1  # for readers only
    # The name's cell has room (the newest run's own name may be one letter).
    box, name = row.bounding_box(), row.locator("td.name").first.bounding_box()
    assert box["width"] <= PHONE["width"] and name["width"] > 100
    # The card still opens its run, and its checkbox still picks it for comparing.
    assert row.locator("input[type=checkbox]").is_visible()
    row.locator("td.name > a").click()
    phone.wait_for_url("**/runs/*/")


def test_a_cards_start_time_never_runs_under_its_duration(phone, loaded_samples):
    # A stale run started half an hour ago: "30 min ago" beside "no write 25 min ago"
    # ran one over the other (the start cell did not wrap).
    now = timezone.now()
    stale = Run.objects.filter(status="running", format="runs").order_by("pk").first()
    Run.objects.filter(pk=stale.pk).update(
        started_at=now - timedelta(minutes=30), source_updated_at=now - timedelta(minutes=25)
    )
    phone.goto("/")
    card = phone.locator(f"#run-{stale.pk}")
    assert "no write 25 min ago" in card.text_content()
    overlapping = phone.evaluate(
        """() => {
            const text = cell => { const range = document.createRange();
                range.selectNodeContents(cell); return [...range.getClientRects()]; };
            const meet = (a, b) => a.right > b.left + 1 && b.right > a.left + 1
                && a.bottom > b.top + 1 && b.bottom > a.top + 1;
            return [...document.querySelectorAll('.runs-table tbody tr')].filter(tr =>
                text(tr.children[5]).some(a => text(tr.children[6]).some(b => meet(a, b)))
            ).map(tr => tr.id);
        }"""
    )
    assert overlapping == []
