"""Upload through the form in a real browser: htmx swaps the results in place."""

import re

import pytest

from traces.models import Run


@pytest.fixture(autouse=True)
def upload_dir(settings, tmp_path):
    settings.TRACER_UPLOAD_DIR = tmp_path / "uploads"


@pytest.fixture
def quiet_favicon(page):
    # The site has no favicon yet; the browser's request for it is not this page's error.
    page.route("**/favicon.ico", lambda route: route.fulfill(status=204, body=""))
    return page


def test_upload_two_files_follow_a_run_link_and_find_the_file(
    quiet_favicon, live_server, samples, transactional_db
):
    page = quiet_favicon
    page.goto("/upload/")
    files = [
        samples / "greentic/01-success-always/trace.json",
        samples / "traceos/replay-tr_1795288829060_vovi8o84uzi.json",
    ]
    page.set_input_files("input[type=file]", [str(path) for path in files])
    names = page.locator("[data-file-names]")
    assert names.text_content() == "trace.json, replay-tr_1795288829060_vovi8o84uzi.json"

    page.get_by_role("button", name="Upload and ingest").click()
    results = page.locator("#ingest-results")
    results.get_by_role("heading", name="Results").wait_for()
    assert page.url.endswith("/upload/")  # swapped in place, not a new page
    assert results.locator(".badge", has_text="ingested").count() == 2
    assert "2 runs added" in results.locator(".summary-line").text_content()

    runs = {run.pk: run for run in Run.objects.all()}
    assert len(runs) == 2
    link = results.locator(".run-links a").first
    href = link.get_attribute("href")
    run_id = int(re.fullmatch(r"/runs/(\d+)/", href).group(1))
    assert run_id in runs

    with page.expect_navigation() as navigation:
        link.click()
    assert navigation.value.status < 400
    assert page.url == f"{live_server.url}/runs/{run_id}/"

    page.goto("/files/")
    table = page.locator("#file-rows")
    assert table.get_by_role("link", name="trace.json", exact=True).count() == 1
    assert table.get_by_role("link", name="replay-tr_1795288829060_vovi8o84uzi.json").count() == 1


def test_a_bad_file_shows_its_error_in_the_results(
    quiet_favicon, samples, transactional_db, tmp_path
):
    page = quiet_favicon
    bad = tmp_path / "broken.json"
    bad.write_text('{"trace_version": 1, "flow": {"id": "x"}, "steps": [')
    page.goto("/upload/")
    page.set_input_files(
        "input[type=file]", [str(samples / "greentic/02-node-error/trace.json"), str(bad)]
    )
    page.get_by_role("button", name="Upload and ingest").click()
    failed_row = page.locator("#ingest-results tr", has_text="broken.json")
    failed_row.locator(".error-text").wait_for()
    assert "✗ failed" in failed_row.text_content()
    assert "invalid JSON" in failed_row.locator(".error-text").text_content()
    assert page.locator("#ingest-results .badge", has_text="ingested").count() == 1
