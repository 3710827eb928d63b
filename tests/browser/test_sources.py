"""A source in a real browser, its scans run by a worker: add a directory and scan it
now, watch the page turn from "queued" to the scan's report with its files listed, and
a list row follow its rescan to the end, without reloading."""

import shutil

import pytest

from traces.models import IngestJob
from traces.tasks import run_ingest_job


@pytest.fixture
def root(settings, tmp_path, samples, transactional_db):
    """Scans queued for a worker (the test is the worker: `run_ingest_job.call`)."""
    settings.TRACER_INGEST_IN_BACKGROUND = True
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "ingest"]}
    }
    settings.TRACER_SOURCE_ROOTS = [tmp_path]
    shutil.copytree(samples / "greentic", tmp_path / "greentic")
    return tmp_path


def work_the_queue() -> None:
    for job in IngestJob.objects.exclude(status__in=("done", "failed")):
        run_ingest_job.call(job.pk)


def add_source(page, path, *, scan_now: bool) -> None:
    page.goto("/sources/")
    page.get_by_label("Path").fill(str(path))
    page.get_by_label("Scan it now").set_checked(scan_now)
    page.get_by_role("button", name="Add source").click()


def test_add_scan_now_then_see_the_report_and_the_files(page, root):
    add_source(page, root / "greentic", scan_now=True)
    page.wait_for_url("**/sources/*/")
    page.evaluate("window.__samePage = true")
    scan = page.locator("#source-scan")
    assert "○ queued" in scan.text_content()
    assert page.get_by_text("Not scanned yet").count() == 0

    work_the_queue()
    scan.locator(".counter", has_text="ingested").wait_for()
    assert scan.locator(".counter", has_text="ingested").locator("b").text_content() == "4"
    # The facts and the files, swapped in with the report: they agree.
    page.locator("#source-facts", has_text="4 trace files").wait_for()
    assert page.locator("#source-files tbody tr[data-row]").count() == 4
    assert "✓ ok 4" in page.locator("#source-pills").text_content()
    assert page.evaluate("window.__samePage") is True  # never reloaded
    page.wait_for_timeout(2500)
    assert scan.get_attribute("hx-trigger") is None  # and it polls no more


def test_a_rows_rescan_is_followed_until_it_ends(page, root):
    add_source(page, root / "greentic", scan_now=False)
    page.wait_for_url("**/sources/*/")
    page.goto("/sources/")
    row = page.locator("tr[id^=source-]")
    assert "never" in row.text_content()

    row.get_by_role("button", name="Rescan now").click()
    row.get_by_text("scan queued for a worker").wait_for()
    assert "○ queued" in row.text_content()

    work_the_queue()
    row.get_by_text("scanned just now: 4 ingested, 0 unchanged, 0 failed").wait_for()
    assert "took " in row.text_content() and " s" in row.text_content()
    assert row.locator("td.num").first.text_content().strip() == "4"  # files found
    assert row.get_attribute("hx-trigger") is None
