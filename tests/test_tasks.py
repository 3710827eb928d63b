"""Background ingestion end to end: an upload queued by the web request is
ingested by a real `db_worker` process, and the job page follows it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse

from traces.models import IngestJob, Run, TraceSource

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def background(settings, tmp_path):
    settings.TRACER_INGEST_IN_BACKGROUND = True
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "ingest"]}
    }
    settings.TRACER_UPLOAD_DIR = tmp_path / "uploads"
    return settings


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def run_worker(tmp_path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        TRACER_INGEST_IN_BACKGROUND="1",
        TRACER_DATA_DIR=str(tmp_path),
    )
    command = [
        sys.executable,
        "manage.py",
        "db_worker",
        "--batch",
        "--no-startup-delay",
        "--queue-name",
        "ingest",
    ]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_an_upload_returns_at_once_and_a_worker_process_ingests_it(
    client, samples, background, tmp_path
):
    with (
        open(samples / "greentic/02-node-error/trace.json", "rb") as one,
        open(samples / "traceos/traces.jsonl", "rb") as two,
    ):
        response = client.post(reverse("traces:upload"), {"files": [one, two]})
    job = IngestJob.objects.get()
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert job.status == "queued" and Run.objects.count() == 0
    page = client.get(job.get_absolute_url()).content.decode()
    assert "queued" in page and "every 1s" in page

    worker = run_worker(tmp_path)
    assert worker.returncode == 0, worker.stderr

    job.refresh_from_db()
    assert job.status == "done", job.error
    assert job.summary["files"]["ingested"] == 2 and job.summary["runs"] == 1 + 9
    assert Run.objects.count() == 10
    done = client.get(job.get_absolute_url(), headers={"HX-Request": "true"}).content.decode()
    assert "done" in done and "every 1s" not in done and "trace.json" in done


def test_htmx_upload_gets_a_polling_status_fragment(client, samples, background):
    with open(samples / "greentic/01-success-always/trace.json", "rb") as handle:
        response = client.post(
            reverse("traces:upload"), {"files": [handle]}, headers={"HX-Request": "true"}
        )
    assert response.status_code == 202
    html = response.content.decode()
    assert "<html" not in html and "queued" in html and "every 1s" in html


def test_a_rescan_is_queued_and_run_by_the_worker(client, samples, background, tmp_path):
    background.TRACER_SOURCE_ROOTS = [samples]
    source = TraceSource.objects.create(path=str(samples / "greentic"))
    response = client.post(reverse("traces:source-rescan", args=[source.pk]))
    job = IngestJob.objects.get(kind="rescan")
    # Back to the source's page, which follows the queued job until it ends.
    assert response.status_code == 302 and response["Location"] == source.get_absolute_url()
    assert job.get_absolute_url() in client.get(source.get_absolute_url()).content.decode()
    worker = run_worker(tmp_path)
    assert worker.returncode == 0, worker.stderr
    job.refresh_from_db()
    source.refresh_from_db()
    assert job.status == "done"
    assert source.last_scan_report["files"]["ingested"] == 4
    assert Run.objects.filter(format="greentic").count() == 4
