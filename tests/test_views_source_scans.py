"""A source's scan as its pages follow it: queued, running, ended (the report in place
of "Not scanned yet"), files counted and listed alike, durations in seconds."""

import shutil
from datetime import timedelta

import pytest
from django.urls import reverse

from traces import sources as scans
from traces.ingest.loader import ingest_paths
from traces.models import IngestJob, TraceFile, TraceSource
from traces.tasks import run_ingest_job
from traces.templatetags.traces_extras import seconds

pytestmark = pytest.mark.django_db
LIST = reverse("traces:source-list")
POLL = {"HX-Request": "true", "HX-Target": "source-scan"}


@pytest.fixture
def greentic(settings, tmp_path, samples):
    """The greentic samples inside the one allowed root."""
    settings.TRACER_SOURCE_ROOTS = [tmp_path]
    target = tmp_path / "greentic"
    shutil.copytree(samples / "greentic", target)
    return target


@pytest.fixture
def background(settings):
    """Scans queued for a worker, which a test runs itself (`run_ingest_job.call`):
    inside the test's transaction nothing is handed to a worker."""
    settings.TRACER_INGEST_IN_BACKGROUND = True


def add_and_scan(client, path) -> TraceSource:
    data = {"path": str(path), "label": "", "every": "", "scan_now": "on"}
    response = client.post(LIST, data)
    source = TraceSource.objects.get()
    assert response.status_code == 302 and response["Location"] == source.get_absolute_url()
    return source


# --- files the site read before the source was added ------------------------------------------


def test_files_read_before_become_the_sources_and_are_listed(client, greentic):
    ingest_paths([str(greentic)])  # as `manage.py ingest` did before the source existed
    assert TraceFile.objects.filter(source=None).count() == 4
    source = add_and_scan(client, greentic)
    source.refresh_from_db()
    assert source.last_scan_report["files"]["unchanged"] == 4
    assert TraceFile.objects.filter(source=source).count() == 4
    page = client.get(source.get_absolute_url()).content.decode()
    assert "No files read from this source yet" not in page
    assert "4 trace files" in page and page.count('data-row-link href="/files/') == 4
    assert "✓ ok 4" in page


def test_a_file_another_source_holds_stays_its(client, greentic):
    inner = TraceSource.objects.create(path=str(greentic))
    scans.rescan(inner)
    outer = TraceSource.objects.create(path=str(greentic.parent))
    summary = scans.rescan(outer)
    assert summary["files"]["unchanged"] == 4
    assert TraceFile.objects.filter(source=inner).count() == 4
    assert not TraceFile.objects.filter(source=outer).exists()
    page = client.get(outer.get_absolute_url()).content.decode()
    assert "0 trace files" in page and "4 held by another source" in page


def test_files_taken_over_are_settled_when_they_vanish(client, greentic):
    ingest_paths([str(greentic)])
    source = add_and_scan(client, greentic)
    shutil.rmtree(greentic / "02-node-error")
    summary = scans.rescan(source)
    assert summary["runs_left_source"] == 1  # the file was the source's, and it left


# --- a scan queued for a worker -----------------------------------------------------------------


def test_add_and_scan_now_shows_the_queued_scan_then_its_report(client, greentic, background):
    source = add_and_scan(client, greentic)
    job = IngestJob.objects.get(source=source)
    page = client.get(source.get_absolute_url()).content.decode()
    assert "Not scanned yet" not in page
    assert "○ queued" in page and job.get_absolute_url() in page
    assert 'hx-trigger="every 2s"' in page  # the scan part polls

    still = client.get(source.get_absolute_url(), headers=POLL).content.decode()
    assert still.lstrip().startswith('<section id="source-scan"') and "every 2s" in still

    run_ingest_job.call(job.pk)
    ended = client.get(source.get_absolute_url(), headers=POLL).content.decode()
    assert "every 2s" not in ended  # polling stops
    assert "4</b><span>✓ ingested" in ended
    # The facts and the files the scan changed come along, out of band.
    assert '<div class="card" id="source-facts" hx-swap-oob="true">' in ended
    assert '<div id="source-files" hx-swap-oob="true">' in ended
    assert ended.count('data-row-link href="/files/') == 4


def test_a_running_scan_says_how_far_it_is(client, greentic, background):
    source = add_and_scan(client, greentic)
    IngestJob.objects.filter(source=source).update(status="running", files_total=4, files_done=1)
    page = client.get(source.get_absolute_url()).content.decode()
    assert "◐ scanning" in page and "1 of 4 files read" in page


def test_a_job_queued_too_long_ago_is_not_followed(client, greentic, background):
    source = add_and_scan(client, greentic)
    old = source.created_at - scans.SCAN_TIMEOUT - timedelta(minutes=1)
    IngestJob.objects.filter(source=source).update(created_at=old)
    page = client.get(source.get_absolute_url()).content.decode()
    assert "every 2s" not in page and "Not scanned yet" in page


def test_rescan_without_htmx_goes_back_to_the_source_page(client, greentic, background):
    source = TraceSource.objects.create(path=str(greentic))
    response = client.post(reverse("traces:source-rescan", args=[source.pk]))
    assert response.status_code == 302 and response["Location"] == source.get_absolute_url()


# --- the list's rows ----------------------------------------------------------------------------


def test_list_rows_poll_while_a_scan_is_pending_and_stop_when_it_ends(client, greentic, background):
    source = add_and_scan(client, greentic)
    row_url = reverse("traces:source-row", args=[source.pk])
    listing = client.get(LIST).content.decode()
    assert f'hx-get="{row_url}" hx-trigger="every 2s"' in listing
    assert "scan queued for a worker" in listing

    row = client.get(row_url, headers={"HX-Request": "true"}).content.decode()
    assert row.lstrip().startswith(f'<tr data-row tabindex="-1" id="source-{source.pk}"')
    assert "every 2s" in row

    run_ingest_job.call(IngestJob.objects.get(source=source).pk)
    row = client.get(row_url, headers={"HX-Request": "true"}).content.decode()
    assert "every 2s" not in row
    assert "scanned just now: 4 ingested, 0 unchanged, 0 failed" in row
    assert "took " in row and " s</div>" in row  # in seconds


def test_a_row_without_htmx_is_the_source_page(client, greentic):
    source = TraceSource.objects.create(path=str(greentic))
    response = client.get(reverse("traces:source-row", args=[source.pk]))
    assert response.status_code == 302 and response["Location"] == source.get_absolute_url()
    assert client.get(reverse("traces:source-row", args=[999])).status_code == 404


def test_list_rows_of_idle_sources_do_not_poll(client, greentic):
    source = add_and_scan(client, greentic)  # scanned inline: ended already
    assert "every 2s" not in client.get(LIST).content.decode()
    assert "every 2s" not in client.get(source.get_absolute_url()).content.decode()


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (13, "under 0.1 s"),
        (850, "0.8 s"),
        (8_700, "8.7 s"),
        (42_400, "42 s"),
        (252_000, "4 min 12 s"),
        (120_000, "2 min"),
        (timedelta(seconds=3.25), "3.2 s"),
        (None, "—"),
    ],
)
def test_durations_in_seconds(value, text):
    assert seconds(value) == text


def test_a_finished_job_says_how_long_it_took_in_seconds(client, greentic, background):
    source = add_and_scan(client, greentic)
    job = IngestJob.objects.get(source=source)
    run_ingest_job.call(job.pk)
    job.refresh_from_db()
    IngestJob.objects.filter(pk=job.pk).update(finished_at=job.started_at + timedelta(seconds=75))
    page = client.get(job.get_absolute_url()).content.decode()
    assert "</span> in 1 min 15 s" in page
    assert "4 ingested · 0 unchanged · 0 failed" in page
