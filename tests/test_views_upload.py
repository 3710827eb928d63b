"""/upload/: several files or a zip at once, saved by content hash and ingested."""

import hashlib
import io
import sqlite3
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.test_read_model_causes import change_source, delete_source_runs
from traces.api.sources import upload_result
from traces.ingest.loader import ingest_paths
from traces.ingest.store import delete_runs
from traces.models import Run, TraceFile
from traces.uploads import ingest_uploads, safe_basename, save_uploads
from traces.views import upload as upload_view

pytestmark = pytest.mark.django_db
URL = reverse("traces:upload")


@pytest.fixture(autouse=True)
def upload_dir(settings, tmp_path):
    settings.TRACER_UPLOAD_DIR = tmp_path / "uploads"
    return settings.TRACER_UPLOAD_DIR


def upload_of(path, name=None):
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def greentic_files(samples):
    return sorted((samples / "greentic").glob("*/trace.json"))


def test_page_has_a_dropzone_form_with_csrf(client):
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "csrfmiddlewaretoken" in html
    assert 'enctype="multipart/form-data"' in html
    assert 'hx-encoding="multipart/form-data"' in html
    assert "data-dropzone" in html and "data-file-names" in html
    assert 'type="file" name="files"' in html and "multiple" in html
    assert 'id="ingest-results"' in html


def test_uploading_several_files_adds_their_runs_and_links_them(client, samples):
    files = [upload_of(path) for path in greentic_files(samples)]
    response = client.post(URL, {"files": files})
    assert response.status_code == 200
    assert Run.objects.filter(format="greentic").count() == 4
    html = response.content.decode()
    assert "4 files:" in html and "<b>4</b> runs added" in html
    for run in Run.objects.all():
        assert reverse("traces:run-detail", args=[run.pk]) in html
    assert html.count("✓ ingested") == 4
    trace_files = TraceFile.objects.all()
    assert {f.display_name for f in trace_files} == {"trace.json"}
    assert all(f.uploaded for f in trace_files)


def test_files_are_saved_by_content_hash_under_a_safe_name(client, samples, upload_dir):
    path = greentic_files(samples)[0]
    client.post(URL, {"files": [upload_of(path, "../../etc/evil\x00name.json")]})
    saved = [p for p in upload_dir.rglob("*") if p.is_file()]
    assert len(saved) == 1
    digest = saved[0].parent.name
    assert saved[0].parent.parent.name == digest[:2]
    assert saved[0].parent.parent.parent == upload_dir
    assert saved[0].read_bytes() == path.read_bytes()
    assert "/" not in saved[0].name and "\x00" not in saved[0].name
    assert TraceFile.objects.get().path == str(saved[0].resolve())


def test_safe_basename_strips_directories_nul_and_caps_length():
    assert safe_basename("../../etc/passwd") == "passwd"
    assert safe_basename("C:\\Users\\me\\trace.json") == "trace.json"
    assert safe_basename("a\x00b\nc.json") == "abc.json"
    assert safe_basename("..") == "upload"
    assert safe_basename("") == "upload"
    assert safe_basename(".hidden.json") == "hidden.json"
    long = safe_basename("é" * 500 + ".sqlite")
    assert long.endswith(".sqlite") and len(long.encode()) <= 200


def test_the_htmx_request_gets_only_the_results_fragment(client, samples):
    files = [upload_of(path) for path in greentic_files(samples)[:2]]
    response = client.post(URL, {"files": files}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="ingest-results"')
    assert "<html" not in html and "dropzone" not in html
    assert "<b>2</b> runs added" in html
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_a_zip_of_the_greentic_samples_ingests_every_member(client, samples):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in greentic_files(samples):
            archive.write(path, f"greentic/{path.parent.name}/trace.json")
    upload = SimpleUploadedFile("greentic.zip", buffer.getvalue())
    response = client.post(URL, {"files": [upload]})
    assert response.status_code == 200
    assert Run.objects.filter(format="greentic").count() == 4
    html = response.content.decode()
    assert "greentic.zip:greentic/02-node-error/trace.json" in html
    assert "<b>4</b> runs added" in html


def test_a_zip_member_dates_its_greentic_run_by_the_member_time(client, samples):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        member = zipfile.ZipInfo("trace.json", date_time=(2026, 3, 1, 12, 0, 0))
        archive.writestr(member, greentic_files(samples)[0].read_bytes())
    client.post(URL, {"files": [SimpleUploadedFile("greentic.zip", buffer.getvalue())]})
    run = Run.objects.get()
    assert run.finished_at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert run.started_at == run.finished_at - timedelta(milliseconds=run.duration_ms)


def test_a_bad_file_beside_a_good_one_is_reported_and_recorded(client, samples):
    good = upload_of(greentic_files(samples)[0])
    bad = SimpleUploadedFile("broken.json", b'{"trace_id": "x", "steps": [')
    response = client.post(URL, {"files": [good, bad]})
    assert response.status_code == 200
    assert Run.objects.count() == 1
    html = response.content.decode()
    assert "✗ failed" in html and "broken.json" in html
    failed = TraceFile.objects.get(status="error")
    assert failed.display_name == "broken.json"
    assert failed.error and failed.uploaded
    assert failed.error in html.replace("&quot;", '"').replace("&#x27;", "'")
    files_page = client.get(reverse("traces:file-list") + "?status=error").content.decode()
    assert "broken.json" in files_page


def test_uploading_the_same_file_again_says_unchanged(client, samples):
    path = greentic_files(samples)[0]
    client.post(URL, {"files": [upload_of(path)]})
    run = Run.objects.get()
    response = client.post(URL, {"files": [upload_of(path)]})
    html = response.content.decode()
    assert "= unchanged" in html and "already ingested, nothing new: it holds 1 run" in html
    assert f'<a href="/runs/{run.pk}/">' in html  # the run it holds, linked
    assert "<b>0</b> runs added" in html
    assert Run.objects.get().ingested_at == run.ingested_at
    assert TraceFile.objects.count() == 1


def test_known_files_list_the_runs_they_hold_in_flat_queries(
    client, samples, monkeypatch, django_assert_max_num_queries
):
    """runs.sqlite holds 8 runs; uploaded again beside the greentic files, each known
    file links its own runs (a window query: two to each file, the rest counted)."""
    paths = [samples / "runs/runs.sqlite", *greentic_files(samples)]
    client.post(URL, {"files": [upload_of(path) for path in paths]})
    held = {f.pk: set(f.runs.values_list("pk", flat=True)) for f in TraceFile.objects.all()}
    monkeypatch.setattr(upload_view, "RUN_LINKS_PER_FILE", 2)
    with django_assert_max_num_queries(30):
        html = client.post(URL, {"files": [upload_of(path) for path in paths]}).content.decode()
    assert html.count("= unchanged") == 5
    assert "it holds 8 runs" in html and html.count("it holds 1 run") == 4
    sqlite_file = TraceFile.objects.get(path__endswith="runs.sqlite")
    linked = [pk for pk in held[sqlite_file.pk] if f'href="/runs/{pk}/"' in html]
    assert len(linked) == 2
    assert "and 6 more on the file's page" in html


def test_a_file_without_runs_says_why(client, tmp_path, samples):
    schema = (samples / "runs/schema.sql").read_text()
    empty = tmp_path / "empty-runs.sqlite"
    with sqlite3.connect(empty) as db:
        db.executescript(schema)
    html = client.post(URL, {"files": [upload_of(empty)]}).content.decode()
    assert "✓ ingested" in html
    assert "no runs: it was read as runs without error, but records no run yet" in html
    trace_file = TraceFile.objects.get()
    page = client.get(trace_file.get_absolute_url()).content.decode()
    assert "no runs: it was read as runs without error" in page


def test_hostile_names_and_errors_are_escaped(client):
    # No slash in it: Django keeps only the part after the last one.
    name = "<img src=x onerror=alert(1)>.json"
    response = client.post(URL, {"files": [SimpleUploadedFile(name, b"<script>alert(1)</script>")]})
    html = response.content.decode()
    assert "<img src=x" not in html and "<script>alert(1)" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.json" in html


def test_an_empty_form_says_to_choose_a_file(client):
    response = client.post(URL, {})
    assert response.status_code == 200
    assert "Choose at least one file to upload." in response.content.decode()


def test_a_request_over_the_limit_is_refused_before_reading_with_413(client, settings, samples):
    settings.TRACER_MAX_UPLOAD_BYTES = 1000
    path = samples / "traceos/traces.json"
    assert path.stat().st_size > 1000
    response = client.post(URL, {"files": [upload_of(path)]})
    assert response.status_code == 413
    html = response.content.decode()
    assert "the limit is 1000" in html and "per upload" in html
    assert not TraceFile.objects.exists()


def test_files_over_the_limit_in_total_are_refused_while_saving(settings, samples, upload_dir):
    from traces.uploads import UploadTooLarge, save_uploads

    paths = greentic_files(samples)[:2]
    settings.TRACER_MAX_UPLOAD_BYTES = paths[0].stat().st_size + 10
    with pytest.raises(UploadTooLarge):
        save_uploads([upload_of(path) for path in paths])
    assert [p for p in upload_dir.rglob("*") if p.is_file()] == []


def test_the_413_is_a_fragment_for_htmx(client, settings, samples):
    settings.TRACER_MAX_UPLOAD_BYTES = 100
    path = greentic_files(samples)[0]
    response = client.post(URL, {"files": [upload_of(path)]}, headers={"HX-Request": "true"})
    assert response.status_code == 413
    assert response.content.decode().lstrip().startswith('<section id="ingest-results"')


def test_csrf_is_enforced(samples):
    client = Client(enforce_csrf_checks=True)
    response = client.post(URL, {"files": [upload_of(greentic_files(samples)[0])]})
    assert response.status_code == 403
    assert not TraceFile.objects.exists()


def test_csrf_token_from_the_page_is_accepted(samples):
    client = Client(enforce_csrf_checks=True)
    client.get(URL)
    token = client.cookies["csrftoken"].value
    upload = upload_of(greentic_files(samples)[0])
    response = client.post(URL, {"files": [upload], "csrfmiddlewaretoken": token})
    assert response.status_code == 200
    assert Run.objects.count() == 1


def test_other_methods_are_not_allowed(client):
    assert client.put(URL).status_code == 405


# --- content already known under another path -------------------------------------------------


def copy_of_runs(samples, folder, name="runs-copy.sqlite"):
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / name
    copy.write_bytes((samples / "runs/runs.sqlite").read_bytes())
    return copy


def test_an_upload_of_bytes_uploaded_before_links_its_runs_and_names_its_file(
    client, samples, tmp_path
):
    """runs.sqlite uploaded gave its 8 runs; the same bytes uploaded again under any
    name say so, name that upload and link its runs: not 8 more runs under the new
    upload's path (a runs database's ids are only unique in it)."""
    copy = copy_of_runs(samples, tmp_path / "mine")
    client.post(URL, {"files": [upload_of(copy, "runs-copy.sqlite")]})
    runs = set(Run.objects.values_list("pk", flat=True))
    assert len(runs) == 8
    known = TraceFile.objects.get(uploaded=True)
    for name in ("another name.sqlite", "a third.sqlite"):
        response = client.post(URL, {"files": [upload_of(copy, name)]})
        html = response.content.decode()
        assert "= unchanged" in html, html
        assert 'the same content as <bdi class="same-as">runs-copy.sqlite</bdi>' in html
        assert "it holds 8 runs" in html and "<b>0</b> runs added" in html
        assert f'href="{known.get_absolute_url()}"' in html
        assert all(f'href="/runs/{pk}/"' in html for pk in runs)
        assert set(Run.objects.values_list("pk", flat=True)) == runs
    # The API's answer alike (POST /api/uploads: its body).
    saved = save_uploads([upload_of(copy, "fourth.sqlite")])
    [result] = upload_result(ingest_uploads(saved))["results"]
    assert result["outcome"] == "unchanged" and result["file_id"] == known.pk
    assert result["same_as"] == known.display_name == "runs-copy.sqlite"
    assert Run.objects.count() == 8


def test_an_upload_of_a_watched_files_bytes_keeps_runs_of_its_own(client, samples, tmp_path):
    """The same bytes as a file of a directory or a source are not taken for that
    file: it may be written again or deleted (a source mirroring deletions takes its
    runs along), and the upload's runs must not go with it."""
    copy = copy_of_runs(samples, tmp_path / "watched")
    ingest_paths([copy.parent])
    html = client.post(URL, {"files": [upload_of(copy, "mine.sqlite")]}).content.decode()
    assert "<b>8</b> runs added" in html and "same content" not in html
    delete_runs(list(Run.objects.filter(source_file__path=str(copy)).values_list("pk", flat=True)))
    assert Run.objects.count() == 8


def test_the_same_bytes_twice_in_one_upload_are_ingested_once(client, samples, tmp_path):
    copy = copy_of_runs(samples, tmp_path)
    files = [upload_of(copy, "a.sqlite"), upload_of(copy, "b.sqlite")]
    html = client.post(URL, {"files": files}).content.decode()
    assert Run.objects.count() == 8
    assert "<b>8</b> runs added" in html and "= unchanged" in html
    assert 'the same content as <bdi class="same-as">a.sqlite</bdi>' in html


# --- one batch: a known path read again with new bytes, and the same bytes at a new path ----


def newer_runs(samples, folder) -> Path:
    """runs.sqlite as its writer goes on with it: a run's error written again, another
    run deleted (7 runs)."""
    newer = copy_of_runs(samples, folder, "newer.sqlite")
    change_source(
        newer,
        ("UPDATE runs SET error = 'written again' WHERE id = (SELECT MIN(id) FROM runs)", ()),
    )
    (gone,) = sqlite3.connect(newer).execute("SELECT MAX(id) FROM runs").fetchone()
    delete_source_runs(newer, [gone])
    return newer


def known_path_with_new_bytes(client, samples, tmp_path) -> tuple[Path, Path]:
    """runs.sqlite uploaded as a.sqlite (8 runs), then its saved file holding newer bytes
    (the upload directory's file written again: uploaded again as it was, it is read
    again, at its known path). Returns (the original, the newer bytes)."""
    original = copy_of_runs(samples, tmp_path / "mine", "a.sqlite")
    client.post(URL, {"files": [upload_of(original)]})
    known = TraceFile.objects.get(uploaded=True)
    newer = newer_runs(samples, tmp_path / "newer")
    Path(known.path).write_bytes(newer.read_bytes())
    return original, newer


@pytest.mark.parametrize("known_first", [True, False])
def test_a_known_path_read_again_and_a_new_path_of_the_same_bytes_ingest_them_once(
    client, samples, tmp_path, known_first
):
    """One upload holds the newer bytes twice: at the known path read again (a.sqlite)
    and at a new one (b.sqlite). The second of the two in the batch, whichever is new,
    is the first's twin: it links the first's runs, not 7 more runs of the same bytes."""
    original, newer = known_path_with_new_bytes(client, samples, tmp_path)
    files = [upload_of(original, "a.sqlite"), upload_of(newer, "b.sqlite")]
    if not known_first:
        files.reverse()
    html = " ".join(client.post(URL, {"files": files}).content.decode().split())
    assert Run.objects.filter(error="written again").count() == 1, html
    first, second = ("a.sqlite", "b.sqlite") if known_first else ("b.sqlite", "a.sqlite")
    # The second says it is the first's twin and links the 7 runs the first holds.
    assert html.count('class="same-as"') == 1
    _, second_row = html.split(f'">{second}</a>')
    assert f'the same content as <bdi class="same-as">{first}</bdi>' in second_row
    assert "it holds 7 runs" in second_row
    read = Run.objects.get(error="written again").source_file
    assert read.display_name == first and read.sha256 == sha256_of(newer)
    held = read.runs.filter(left_source_at=None).values_list("pk", flat=True)
    assert len(held) == 7 and all(f'href="/runs/{pk}/"' in second_row for pk in held)
    if known_first:
        # Read again in place: its 7 runs updated, the deleted one kept as history,
        # which the twin does not hold.
        assert Run.objects.count() == 8 and "<b>0</b> runs added" in html
        history = Run.objects.get(left_source_at__isnull=False)
        assert history.source_file == read and f'href="/runs/{history.pk}/"' not in second_row
    else:
        # b.sqlite's 7 runs are new; a.sqlite's 8 from before are left as they were.
        assert Run.objects.count() == 15 and "<b>7</b> runs added" in html


@pytest.mark.parametrize("known_first", [True, False])
def test_the_api_takes_the_second_copy_of_one_batch_for_the_first(
    client, samples, tmp_path, django_user_model, known_first
):
    from tests.test_api import bearer, user_with

    original, newer = known_path_with_new_bytes(client, samples, tmp_path)
    files = [upload_of(original, "a.sqlite"), upload_of(newer, "b.sqlite")]
    if not known_first:
        files.reverse()
    uploader = bearer(user_with(django_user_model, "add_tracefile"))
    body = client.post("/api/uploads", {"files": files}, headers=uploader).json()
    first, second = body["results"]
    assert first["outcome"] == "ingested" and first["same_as"] == ""
    assert second["outcome"] == "unchanged" and second["same_as"] == first["path"]
    assert second["file_id"] == first["file_id"]
    assert Run.objects.filter(error="written again").count() == 1
    assert len(first["runs_added"]) == (0 if known_first else 7)
    assert len(first["runs_updated"]) == (1 if known_first else 0)
    assert second["runs_added"] == second["runs_updated"] == []


def test_a_known_upload_path_with_new_bytes_is_its_earlier_twins_in_a_later_batch(
    client, samples, tmp_path
):
    """Uploaded again alone after b.sqlite, the known path holding b.sqlite's bytes is
    b.sqlite's twin: not those runs a second time."""
    original, newer = known_path_with_new_bytes(client, samples, tmp_path)
    client.post(URL, {"files": [upload_of(newer, "b.sqlite")]})
    html = client.post(URL, {"files": [upload_of(original, "a.sqlite")]}).content.decode()
    assert 'the same content as <bdi class="same-as">b.sqlite</bdi>' in html
    assert Run.objects.filter(error="written again").count() == 1


def test_an_upload_whose_twin_lost_its_runs_is_ingested_so_nothing_is_lost(
    client, samples, tmp_path
):
    """The earlier upload's runs were deleted: the same bytes uploaded give them again."""
    copy = copy_of_runs(samples, tmp_path / "mine")
    client.post(URL, {"files": [upload_of(copy, "first.sqlite")]})
    delete_runs(list(Run.objects.values_list("pk", flat=True)))
    html = client.post(URL, {"files": [upload_of(copy, "again.sqlite")]}).content.decode()
    assert "<b>8</b> runs added" in html and "same content" not in html
    assert Run.objects.count() == 8


def test_a_newer_version_at_the_same_path_still_updates_its_run(client, samples, tmp_path):
    """Only a new path is compared with known content: a file written again at its
    path is read again (its run updated), not taken for its old bytes' twin."""
    copy = copy_of_runs(samples, tmp_path / "watched")
    ingest_paths([copy])
    with sqlite3.connect(copy) as db:
        (run_id,) = db.execute("SELECT id FROM runs ORDER BY id LIMIT 1").fetchone()
        db.execute("UPDATE runs SET error = 'written again by its writer' WHERE id = ?", (run_id,))
    report = ingest_paths([copy])
    assert [result.outcome for result in report.files] == ["ingested"]
    assert Run.objects.get(external_id=run_id).error == "written again by its writer"
    assert Run.objects.count() == 8
    # Uploaded, the new bytes are a database of their own (see the test below).
    html = client.post(URL, {"files": [upload_of(copy, "newer.sqlite")]}).content.decode()
    assert "same content" not in html
    assert Run.objects.filter(error="written again by its writer").count() == 2


def test_a_copy_in_a_watched_directory_is_its_own_database(samples, tmp_path):
    """Sources are not compared by content: a watched file is written to (a copy of a
    runs database is a database its writer may go on with), and a run read from
    another path must not hang on a file that may be moved or deleted."""
    one = copy_of_runs(samples, tmp_path / "one")
    two = copy_of_runs(samples, tmp_path / "two")
    ingest_paths([one.parent, two.parent])
    assert Run.objects.count() == 16
    assert Run.objects.values("external_id").distinct().count() == 8
