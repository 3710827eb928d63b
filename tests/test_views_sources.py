"""/sources/: directories on the server, confined to the allowed roots, rescanned."""

import gc
import json
import os
import shutil
import socket
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from traces import sources as scans
from traces.ingest import FORMATS
from traces.ingest.loader import parser_version
from traces.models import Run, TraceFile, TraceSource

pytestmark = pytest.mark.django_db
LIST = reverse("traces:source-list")
# Claims to be greentic (its sniffer accepts it) but is cut short: a parse error.
BROKEN = '{"trace_version": 1, "flow": {"id": "x"}, "steps": ['


@pytest.fixture
def root(settings, tmp_path):
    """The one allowed root, with a copy of the greentic samples in it."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    settings.TRACER_SOURCE_ROOTS = [allowed]
    return allowed


@pytest.fixture
def greentic(root, samples):
    target = root / "greentic"
    shutil.copytree(samples / "greentic", target)
    return target


def add(client, path, **extra):
    data = {"path": str(path), "label": "", "every": "", **extra}
    return client.post(LIST, data)


def form_error(response) -> str:
    assert response.status_code == 200
    return " ".join(response.context["form"].errors.get("path", []))


# --- adding ---------------------------------------------------------------------------------


def test_adding_a_directory_inside_the_roots_scans_it(client, greentic):
    response = add(client, greentic, label="Greentic", every="15", scan_now="on")
    source = TraceSource.objects.get()
    assert response.status_code == 302 and response["Location"] == source.get_absolute_url()
    assert source.path == str(greentic.resolve())
    assert source.label == "Greentic"
    assert source.rescan_every == timedelta(minutes=15)
    assert source.files_found == 4 and source.files_failed == 0
    assert source.last_scan_report["files"]["ingested"] == 4
    assert Run.objects.count() == 4
    assert TraceFile.objects.filter(source=source).count() == 4


def test_adding_without_scan_now_only_records_the_source(client, greentic):
    add(client, greentic)
    source = TraceSource.objects.get()
    assert source.rescan_every is None and source.last_scan_started_at is None
    assert not Run.objects.exists()


def test_a_path_outside_the_roots_is_refused(client, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    assert "outside the allowed roots" in form_error(add(client, outside))
    assert not TraceSource.objects.exists()


def test_dot_dot_out_of_the_roots_is_refused(client, root, tmp_path):
    (tmp_path / "outside").mkdir()
    assert "outside the allowed roots" in form_error(add(client, f"{root}/../outside"))


def test_a_symlink_leading_out_of_the_roots_is_refused(client, root, tmp_path):
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside")
    error = form_error(add(client, root / "escape"))
    assert "leads outside the allowed roots" in error


def test_dev_null_is_refused(client, root):
    assert "outside the allowed roots" in form_error(add(client, "/dev/null"))


def test_a_device_file_is_refused_even_inside_a_root(client, settings):
    settings.TRACER_SOURCE_ROOTS = ["/dev"]
    assert "is a character device, not a directory or a file" in form_error(
        add(client, "/dev/null")
    )


def test_a_fifo_and_a_socket_are_refused(client, root):
    os.mkfifo(root / "pipe")
    assert "FIFO" in form_error(add(client, root / "pipe"))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "sock"))
        assert "is a socket" in form_error(add(client, root / "sock"))


def test_a_missing_path_is_refused(client, root):
    assert "does not exist" in form_error(add(client, root / "nope"))


def test_a_relative_path_is_refused(client, root):
    assert "absolute path" in form_error(add(client, "samples/greentic"))


def test_the_same_path_twice_is_refused(client, greentic):
    add(client, greentic)
    assert "already a source" in form_error(add(client, f"{greentic}/../greentic"))


def test_a_bad_schedule_is_a_form_error(client, greentic):
    response = add(client, greentic, every="0")
    assert response.status_code == 200 and response.context["form"].errors["every"]
    assert not TraceSource.objects.exists()


def test_adding_needs_csrf(greentic):
    response = Client(enforce_csrf_checks=True).post(LIST, {"path": str(greentic)})
    assert response.status_code == 403


# --- the list -------------------------------------------------------------------------------


def make_source(path, **fields) -> TraceSource:
    return TraceSource.objects.create(path=str(path), **fields)


def test_list_shows_each_source_with_schedule_scan_and_failures(client, greentic):
    source = make_source(greentic, label="Nightly", rescan_every=timedelta(hours=2))
    scans.rescan(source)
    (greentic / "broken.json").write_text(BROKEN)
    scans.rescan(source)
    html = client.get(LIST).content.decode()
    assert "Nightly" in html and str(greentic) in html
    assert "every 2 h" in html and "next in" in html
    assert "✓ enabled" in html
    assert f"{source.get_absolute_url()}?status=error#files" in html
    assert reverse("traces:source-rescan", args=[source.pk]) in html
    assert 'hx-target="closest tr"' in html


def test_list_query_count_does_not_grow_with_sources(client, root, django_assert_num_queries):
    for index in range(3):
        (root / f"d{index}").mkdir()
        make_source(root / f"d{index}")
    with django_assert_num_queries(2):  # the sources, their scans queued or running
        assert client.get(LIST).status_code == 200
    for index in range(3, 30):
        (root / f"d{index}").mkdir()
        make_source(root / f"d{index}", rescan_every=timedelta(minutes=5))
    with django_assert_num_queries(2):
        assert client.get(LIST).status_code == 200


def test_hostile_labels_and_paths_are_escaped(client, root):
    odd = root / "<img src=x onerror=alert(1)>"
    odd.mkdir()
    make_source(odd, label="<script>alert(1)</script>")
    html = client.get(LIST).content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- rescanning -----------------------------------------------------------------------------


def test_rescan_records_the_report_on_the_source(greentic):
    source = make_source(greentic)
    summary = scans.rescan(source)
    source.refresh_from_db()
    assert summary["files"] == {
        "ingested": 4,
        "unchanged": 0,
        "failed": 0,
        "skipped": 0,
        "refused": 0,
    }
    assert source.last_scan_report == summary
    assert source.last_scan_started_at <= source.last_scan_finished_at
    assert source.files_found == 4
    again = scans.rescan(source)
    assert again["files"]["unchanged"] == 4 and again["files"]["ingested"] == 0


def copies_of(samples, target, count: int) -> None:
    """`count` copies of the greentic samples below `target`."""
    for index in range(count):
        shutil.copytree(samples / "greentic", target / f"copy-{index}")


def test_an_unchanged_rescan_reads_no_file_in_the_same_queries_for_ten_times_the_files(
    greentic, samples, monkeypatch
):
    source = make_source(greentic)
    scans.rescan(source)

    def no_loader(*args, **kwargs):
        raise AssertionError("the loader was called for unchanged files")

    monkeypatch.setattr(scans, "ingest_found", no_loader)
    monkeypatch.setattr(scans, "_sniff", no_loader)
    with CaptureQueriesContext(connection) as few:
        summary = scans.rescan(source)
    assert summary["files"]["unchanged"] == 4 and summary["files_found"] == 4
    monkeypatch.undo()

    copies_of(samples, greentic, 9)
    assert scans.rescan(source)["files"]["ingested"] == 36
    monkeypatch.setattr(scans, "ingest_found", no_loader)
    monkeypatch.setattr(scans, "_sniff", no_loader)
    with CaptureQueriesContext(connection) as many:
        summary = scans.rescan(source)
    assert summary["files"] == {
        "ingested": 0,
        "unchanged": 40,
        "failed": 0,
        "skipped": 0,
        "refused": 0,
    }
    assert summary["files_found"] == 40 and summary["runs_left_source"] == 0
    assert len(many) == len(few) <= 5


def test_a_rescan_reads_again_what_changed_failed_or_an_older_parser_read(greentic, monkeypatch):
    source = make_source(greentic)
    scans.rescan(source)
    changed = greentic / "01-success-always/trace.json"
    changed.write_text(changed.read_text() + "\n")
    broken = greentic / "broken.json"
    broken.write_text(BROKEN)
    summary = scans.rescan(source)
    assert summary["files"]["ingested"] == 1 and summary["files"]["unchanged"] == 3
    assert summary["files"]["failed"] == 1

    assert scans.rescan(source)["files"] == {
        "ingested": 0,
        "unchanged": 4,
        "failed": 1,  # tried again each time: it may have been fixed
        "skipped": 0,
        "refused": 0,
    }
    newer = parser_version("greentic") + 1
    monkeypatch.setattr(FORMATS["greentic"], "PARSER_VERSION", newer, raising=False)
    assert scans.rescan(source)["files"]["ingested"] == 4


def test_a_scan_that_fails_while_the_collector_is_paused_turns_it_back_on(greentic, monkeypatch):
    def lost_database(paths):
        assert not gc.isenabled()
        raise DatabaseError("connection lost")

    monkeypatch.setattr(scans, "known_rows", lost_database)
    summary = scans.rescan(make_source(greentic))
    assert "connection lost" in summary["error"] and gc.isenabled()


@pytest.mark.parametrize("mirror", [False, True], ids=["keep", "mirror"])
def test_a_file_gone_from_the_source_takes_its_runs_out_of_it(greentic, mirror):
    source = make_source(greentic, mirror_deletions=mirror)
    scans.rescan(source)
    removed = greentic / "02-node-error"
    shutil.rmtree(removed)
    gone = Run.objects.filter(source_file__path__startswith=str(removed.resolve()))
    gone_ids = set(gone.values_list("pk", flat=True))
    assert len(gone_ids) == 1
    summary = scans.rescan(source)
    assert summary["runs_left_source"] == 1
    if mirror:
        assert not Run.objects.filter(pk__in=gone_ids).exists()
    else:
        assert (
            set(Run.objects.filter(left_source_at__isnull=False).values_list("pk", flat=True))
            == gone_ids
        )
    assert Run.objects.filter(left_source_at__isnull=True).count() == 3
    assert scans.rescan(source)["runs_left_source"] == 0  # settled once


def test_a_scan_that_finds_nothing_settles_nothing(greentic):
    """An unmounted disk looks like an empty directory: its runs have not left."""
    source = make_source(greentic, mirror_deletions=True)
    scans.rescan(source)
    for child in greentic.iterdir():
        shutil.rmtree(child)
    assert scans.rescan(source)["runs_left_source"] == 0
    assert Run.objects.filter(left_source_at__isnull=True).count() == 4


def test_rescan_button_posts_and_redirects_to_the_report(client, greentic):
    source = make_source(greentic)
    response = client.post(reverse("traces:source-rescan", args=[source.pk]))
    assert response.status_code == 302 and response["Location"] == source.get_absolute_url()
    source.refresh_from_db()
    assert source.files_found == 4


def test_rescan_with_htmx_returns_the_updated_row(client, greentic):
    source = make_source(greentic)
    url = reverse("traces:source-rescan", args=[source.pk])
    response = client.post(url, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<tr data-row tabindex="-1" id="source-{source.pk}"')
    assert "scanned just now: 4 ingested" in html


def test_rescan_needs_post_and_csrf(greentic):
    source = make_source(greentic)
    url = reverse("traces:source-rescan", args=[source.pk])
    assert Client().get(url).status_code == 405
    assert Client(enforce_csrf_checks=True).post(url).status_code == 403
    source.refresh_from_db()
    assert source.last_scan_started_at is None


def test_a_second_scan_while_one_runs_is_refused(greentic):
    source = make_source(greentic, last_scan_started_at=timezone.now())
    with pytest.raises(scans.ScanInProgress):
        scans.rescan(source)
    stuck = timezone.now() - scans.SCAN_TIMEOUT - timedelta(minutes=1)
    TraceSource.objects.filter(pk=source.pk).update(last_scan_started_at=stuck)
    source.refresh_from_db()
    assert scans.rescan(source)["files"]["ingested"] == 4


def test_a_symlink_inside_a_source_pointing_out_is_refused_and_not_read(
    greentic, tmp_path, samples
):
    outside = tmp_path / "secret"
    outside.mkdir()
    shutil.copy(samples / "greentic/01-success-always/trace.json", outside / "trace.json")
    (greentic / "leak.json").symlink_to(outside / "trace.json")
    (greentic / "leakdir").symlink_to(outside)
    source = make_source(greentic)
    summary = scans.rescan(source)
    refused = {item["path"]: item["reason"] for item in summary["refused"]}
    assert set(refused) == {str(greentic / "leak.json"), str(greentic / "leakdir")}
    assert all("outside the allowed roots" in reason for reason in refused.values())
    assert summary["files"]["refused"] == 2 and summary["files"]["ingested"] == 4
    assert not TraceFile.objects.filter(path__startswith=str(outside)).exists()


def test_a_symlink_to_a_file_inside_the_roots_is_read(root, samples):
    (root / "real").mkdir()
    shutil.copy(samples / "greentic/02-node-error/trace.json", root / "real/trace.json")
    (root / "links").mkdir()
    (root / "links/alias.json").symlink_to(root / "real/trace.json")
    summary = scans.rescan(make_source(root / "links"))
    assert summary["files"]["ingested"] == 1 and summary["refused"] == []


def test_non_traces_are_skipped_and_broken_traces_fail(greentic, samples):
    (greentic / "README.md").write_text("notes")
    (greentic / "empty.json").write_text("")
    (greentic / "broken.json").write_text(BROKEN)
    os.mkfifo(greentic / "pipe")
    source = make_source(greentic)
    summary = scans.rescan(source)
    skipped = {os.path.basename(item["path"]): item["reason"] for item in summary["skipped"]}
    assert "not a trace file" in skipped["README.md"]
    assert "empty file" in skipped["empty.json"]
    assert "FIFO" in skipped["pipe"]
    source.refresh_from_db()
    failed = TraceFile.objects.filter(source=source, status="error")
    assert summary["files"]["failed"] == source.files_failed == failed.count()
    assert failed.get().display_name == str(greentic / "broken.json")
    assert "broken.json" in failed.get().error
    assert source.files_found == 4 + 3 + 1


def test_a_source_whose_path_now_leaves_the_roots_reports_why(settings, greentic, tmp_path):
    source = make_source(greentic)
    settings.TRACER_SOURCE_ROOTS = [tmp_path / "elsewhere"]
    summary = scans.rescan(source)
    source.refresh_from_db()
    assert "outside the allowed roots" in summary["error"]
    assert source.last_scan_report["error"] == summary["error"]
    assert not Run.objects.exists()


def test_a_database_file_can_be_a_source(root, samples):
    shutil.copy(samples / "runs/runs.sqlite", root / "runs.sqlite")
    summary = scans.rescan(make_source(scans.confine(root / "runs.sqlite")))
    assert summary["files"]["ingested"] == 1 and summary["runs"] > 0


# --- the detail page ------------------------------------------------------------------------


def test_detail_shows_the_last_report_and_the_files(client, greentic):
    (greentic / "notes.txt").write_text("hello")
    (greentic / "leak.json").symlink_to("/etc/hostname")
    source = make_source(greentic, label="G")
    scans.rescan(source)
    response = client.get(source.get_absolute_url())
    html = response.content.decode()
    assert response.status_code == 200
    assert "✓ ingested" in html and "⚠ refused" in html
    assert "leak.json" in html and "outside the allowed roots" in html
    assert "notes.txt" in html
    assert html.count("greentic") >= 4
    for trace_file in TraceFile.objects.filter(source=source):
        assert trace_file.get_absolute_url() in html


def test_detail_files_filter_by_status_and_reject_bad_status(client, greentic):
    (greentic / "broken.json").write_text(BROKEN)
    source = make_source(greentic)
    scans.rescan(source)
    response = client.get(source.get_absolute_url() + "?status=error")
    rows = response.context["page"].items
    assert rows and all(row.status == "error" for row in rows)
    assert client.get(source.get_absolute_url() + "?status=nope").status_code == 400
    assert client.get(source.get_absolute_url() + "?after=garbage").status_code == 400


def test_detail_files_htmx_gets_only_the_rows(client, greentic):
    source = make_source(greentic)
    scans.rescan(source)
    response = client.get(source.get_absolute_url(), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="source-files">')
    assert "<html" not in html
    # Back to a page htmx no longer has in its history cache: the whole page.
    restore = {"HX-Request": "true", "HX-History-Restore-Request": "true"}
    assert "<html" in client.get(source.get_absolute_url(), headers=restore).content.decode()


def test_detail_query_count_does_not_grow_with_files(
    client, root, samples, django_assert_num_queries
):
    source = make_source(root)
    shutil.copy(samples / "greentic/01-success-always/trace.json", root / "a.json")
    scans.rescan(source)
    with django_assert_num_queries(4):  # the source, its pending scan, its files, their counts
        client.get(source.get_absolute_url())
    for index in range(20):
        (root / f"bad{index}.json").write_text(BROKEN)
    scans.rescan(source)
    with django_assert_num_queries(4):
        client.get(source.get_absolute_url())


def test_settings_form_changes_schedule_label_and_enabled(client, greentic):
    source = make_source(greentic, rescan_every=timedelta(minutes=5))
    response = client.post(source.get_absolute_url(), {"label": "New", "every": "120"})
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.label == "New" and not source.enabled
    assert source.rescan_every == timedelta(hours=2)
    page = client.get(source.get_absolute_url()).content.decode()
    assert 'value="120"' in page and "⊘ disabled" in page


def write_invocation(path, samples, flow: str, minute: int) -> None:
    """greentic's runner writing its next invocation over the same trace.json."""
    envelope = json.loads((samples / "greentic/01-success-always/trace.json").read_text())
    envelope["flow"]["id"] = flow
    path.write_text(json.dumps(envelope, indent=2))
    os.utime(path, (1_795_000_000 + 60 * minute,) * 2)


def test_a_source_keeps_runs_by_default_and_can_be_added_mirroring_deletions(client, root):
    page = client.get(LIST).content.decode()
    assert "Delete runs the source no longer holds" in page
    assert 'name="mirror_deletions"' in page and 'id="id_mirror_deletions" checked' not in page
    (root / "kept").mkdir()
    (root / "mirrored").mkdir()
    add(client, root / "kept", scan_now="on")
    add(client, root / "mirrored", mirror_deletions="on", scan_now="on")
    sources = dict(TraceSource.objects.values_list("path", "mirror_deletions"))
    assert sources == {str(root / "kept"): False, str(root / "mirrored"): True}


def test_settings_turn_mirror_deletions_on_and_the_next_scan_deletes(client, root, samples):
    source = make_source(root)
    trace = root / "trace.json"
    for minute, flow in enumerate(["first", "second"]):
        write_invocation(trace, samples, flow, minute)
        scans.rescan(source)
    left = {run.name: run.left_source_at is not None for run in Run.objects.all()}
    assert left == {"first": True, "second": False}
    page = client.get(source.get_absolute_url()).content.decode()
    assert "kept, marked “no longer in its source”" in page
    response = client.post(
        source.get_absolute_url(), {"label": "", "enabled": "on", "mirror_deletions": "on"}
    )
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.mirror_deletions and source.enabled
    page = client.get(source.get_absolute_url()).content.decode()
    assert 'id="id_mirror_deletions" checked' in page
    write_invocation(trace, samples, "third", 2)
    scans.rescan(source)
    assert list(Run.objects.values_list("name", flat=True)) == ["third"]


def test_unknown_source_is_404(client):
    assert client.get(reverse("traces:source-detail", args=[999])).status_code == 404
    assert client.post(reverse("traces:source-rescan", args=[999])).status_code == 404


def test_files_found_counts_files_on_disk_even_when_read_together(root, samples):
    shutil.copytree(samples / "workflow", root / "workflow")
    source = make_source(root / "workflow")
    scans.rescan(source)
    source.refresh_from_db()
    assert source.files_found == 2  # workflow.db and the events.db read with it
    assert source.files_failed == 0 and Run.objects.filter(format="workflow").exists()


def test_the_empty_list_offers_the_form_only_to_who_may_add(client, settings):
    html = " ".join(client.get(LIST).content.decode().split())
    assert "Add a directory below" in html and 'id="add-source"' in html
    # Read-only (the default outside tests): there is no form below to point at.
    settings.TRACER_OPEN_WRITES = False
    html = " ".join(Client().get(LIST).content.decode().split())
    assert 'id="add-source"' not in html and "below" not in html
    assert "Run <code>python manage.py ingest PATH</code> on the server" in html
    assert f'href="{reverse("admin:login")}?next=/sources/">sign in</a>' in html
