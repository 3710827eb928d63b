"""The runs list in a real browser: filters swap the rows and keep the URL,
pages move without reloading, and the back button restores the view."""

from traces.models import Run


def run_names(page) -> list[str]:
    return page.locator("#run-rows td.name > a").all_text_contents()


def test_filters_swap_rows_and_push_the_url(page, loaded_samples):
    page.goto("/")
    page.evaluate("window.__samePage = true")
    total = Run.objects.count()
    assert f"{total} runs" in page.locator(".summary-line").text_content()

    page.select_option("select[name=status]", "failed")
    page.wait_for_url("**status=failed**")
    failed = Run.objects.filter(status="failed").count()
    page.locator(".summary-line", has_text=f"{failed} run").wait_for()
    assert len(run_names(page)) == failed
    badges = page.locator("#run-rows tbody .badge").all_text_contents()
    assert badges and all("failed" in badge for badge in badges)

    page.select_option("select[name=format]", "greentic")
    page.wait_for_url("**format=greentic**")
    expected = Run.objects.filter(status="failed", format="greentic").count()
    page.locator(".summary-line", has_text=f"{expected} run").wait_for()
    assert len(run_names(page)) == expected
    assert page.evaluate("window.__samePage") is True  # swapped, never reloaded

    page.go_back()
    page.wait_for_url("**status=failed")
    page.locator(".summary-line", has_text=f"{failed} run").wait_for()


def test_text_search_narrows_after_typing(page, loaded_samples):
    page.goto("/")
    page.fill("#run-rows ~ * input[name=q], form.filters input[name=q]", "sync_stripe")
    page.wait_for_url("**q=sync_stripe**")
    expected = Run.objects.filter(name__icontains="sync_stripe").count()
    page.locator(".summary-line", has_text=f"{expected} run").wait_for()
    assert set(run_names(page)) == {"sync_stripe"}


def test_the_keyboard_moves_through_rows_and_opens_one(page, loaded_samples):
    page.goto("/?format=runs&sort=name")
    page.keyboard.press("j")
    first = page.locator("#run-rows tbody tr").first
    assert first.evaluate("row => row === document.activeElement")
    page.keyboard.press("Enter")
    page.wait_for_url("**/runs/*/")
    assert page.locator("h1").first.text_content().strip()


def test_slash_focuses_search(page, loaded_samples):
    page.goto("/")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "global-search"


def test_the_theme_toggle_says_whether_dark_is_on(page, loaded_samples):
    page.emulate_media(color_scheme="light")
    page.goto("/")
    toggle = page.get_by_role("button", name="Dark theme")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.reload()
    assert page.get_by_role("button", name="Dark theme").get_attribute("aria-pressed") == "true"


def test_the_footer_links_to_the_api_docs(page, loaded_samples):
    page.goto("/")
    page.locator("footer").get_by_role("link", name="API docs").click()
    page.wait_for_url("**/api/docs")


def test_a_time_preset_and_a_typed_relative_time_filter_the_list(page, loaded_samples):
    page.goto("/")
    page.get_by_role("link", name="last 7 d").click()
    page.wait_for_url("**since=7d")
    assert page.locator("input[name=since]").input_value() == "7d"
    assert page.get_by_role("link", name="last 7 d").get_attribute("aria-current") == "true"
    page.fill("input[name=since]", "now-30d")
    page.keyboard.press("Tab")
    page.wait_for_url("**since=now-30d**")
    assert "could not be answered" not in page.content()


def test_new_runs_are_announced_and_shown_on_click(page, loaded_samples):
    from tests.factories import make_runs

    page.goto("/?format=runs")
    before = len(run_names(page))
    make_runs(2, name="arrived later")
    # The poll fires every 30 s; ask for it now, as its timer would.
    page.evaluate(
        "htmx.ajax('GET', document.querySelector('#new-runs').getAttribute('hx-get'),"
        " {target: '#new-runs', swap: 'outerHTML'})"
    )
    news = page.get_by_role("link", name="2 new runs since this list was shown: show them")
    news.click()
    page.wait_for_url("**/?format=runs")
    page.locator("#run-rows td.name > a", has_text="arrived later").first.wait_for()
    assert len(run_names(page)) == before + 2


def test_failing_now_links_to_the_recent_failures_of_a_type(page, loaded_samples):
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import make_runs

    for run in make_runs(2, status="failed", type="checkout", name="checkout broke"):
        Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=20))
    page.goto("/")
    strip = page.get_by_role("region", name="Failing now")
    strip.get_by_role("row", name="checkout").get_by_role("link", name="✗ 2").first.click()
    page.wait_for_url("**type=checkout&status=failed&since=1h")
    assert run_names(page) == ["checkout broke", "checkout broke"]
