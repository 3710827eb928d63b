"""The search on a phone (390 x 844): the header box, results grouped by kind and
readable without sideways scrolling of the page, and an exact id straight to its
page even when 30 newer runs match its words."""

from tests.browser.conftest import PHONE
from tests.factories import make_runs
from traces.models import Run


def _search_from_the_header(phone, query: str) -> None:
    phone.goto("/")
    box = phone.locator("#global-search")
    assert box.is_visible()
    box.fill(query)
    box.press("Enter")


def test_results_are_grouped_by_kind_and_fit_the_phone(phone, loaded_samples):
    _search_from_the_header(phone, "page")
    phone.wait_for_url("**/search/?q=page")
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    summary = phone.locator(".summary-line").inner_text()
    for kind in ("Runs", "Steps", "Entities"):
        group = phone.get_by_role("region", name=kind)
        heading = group.get_by_role("heading", level=2)
        box = heading.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], kind
        # Its count is the summary's, and its first match is a readable link: a name
        # set on a line or two, not wrapped letter by letter in a squeezed column.
        count = heading.locator(".muted").inner_text().split()[0]
        assert f"{count} {kind.lower()[:4]}" in summary.lower(), (kind, summary)
        link = group.locator("tbody tr").first.locator("a").first
        name = link.inner_text()
        assert name and link.bounding_box()["width"] >= min(len(name), 8) * 5, (kind, name)
        line = float(link.evaluate("a => parseFloat(getComputedStyle(a).lineHeight) || 20"))
        assert link.bounding_box()["height"] <= 3 * line, (kind, name)
    phone.get_by_role("region", name="Entities").get_by_role("link").first.click()
    phone.wait_for_url("**/entities/**")


def test_an_exact_id_from_the_header_opens_it_past_30_newer_matches(phone, transactional_db):
    (run,) = make_runs(1, name="the one")
    Run.objects.filter(pk=run.pk).update(external_id="order-4711")
    make_runs(30, name="retry of order 4711")
    _search_from_the_header(phone, "order-4711")
    phone.wait_for_url(f"**{run.get_absolute_url()}")
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]


def test_several_exact_ids_come_first_marked_exact(phone, transactional_db):
    runs = [*make_runs(1, name="twin"), *make_runs(1, format="workflow", name="twin")]
    make_runs(25, name="retry of dup 42")
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(external_id="dup-42")
    _search_from_the_header(phone, "dup-42")
    phone.wait_for_url("**/search/?q=dup-42")
    assert "exactly the id of 2 things" in phone.locator("#search-exact").inner_text()
    rows = phone.get_by_role("region", name="Runs").locator("tbody tr")
    assert [rows.nth(i).locator(".badge.flag").count() for i in range(3)] == [1, 1, 0]
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
