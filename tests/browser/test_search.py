"""The one search in a real browser: from the header box to grouped results, and an
exact id straight to its page."""

from traces.models import Run


def test_the_header_search_lists_runs_steps_and_entities(page, loaded_samples):
    page.goto("/")
    page.keyboard.press("/")
    page.keyboard.type("unreachable")
    page.keyboard.press("Enter")
    page.wait_for_url("**/search/?q=unreachable")
    steps = page.get_by_role("region", name="Steps")
    steps.get_by_role("link").first.click()
    page.wait_for_url("**/runs/*/steps/**")
    assert "unreachable" in page.content()


def test_an_exact_run_id_opens_the_run(page, loaded_samples):
    run = Run.objects.filter(format="runs").order_by("pk").first()
    page.goto("/")
    page.fill("#global-search", run.external_id)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{run.get_absolute_url()}")
    assert page.locator("h1").first.text_content().strip()


def test_an_entity_prefix_lists_entities_with_links(page, loaded_samples):
    page.goto("/search/?q=page_&jump=no")
    entities = page.get_by_role("region", name="Entities")
    assert entities.locator("tbody tr").count() >= 2
    entities.get_by_role("link").first.click()
    page.wait_for_url("**/entities/**")
