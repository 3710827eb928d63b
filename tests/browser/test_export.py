"""The run page's download buttons in a real browser: the files arrive and parse."""

import json
from pathlib import Path

from traces.ingest.otlp_json import request_from_json
from traces.models import Run


def test_otlp_button_downloads_a_file_that_parses(page, loaded_samples):
    run = Run.objects.get(format="runs", name="sync_stripe", status="failed")
    page.goto(run.get_absolute_url())
    with page.expect_download() as info:
        page.get_by_role("link", name="OTLP", exact=True).click()
    download = info.value
    assert download.suggested_filename == f"run-{run.pk}.otlp.json"
    document = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    request = request_from_json(document, download.suggested_filename)
    (spans,) = [scope.spans for scope in request.resource_spans[0].scope_spans]
    assert len(spans) == 1 + run.step_count + run.call_count
    assert spans[0].name == "sync_stripe"


def test_perfetto_button_downloads_trace_events(page, loaded_samples):
    run = Run.objects.get(format="runs", name="sync_stripe", status="failed")
    page.goto(run.get_absolute_url())
    with page.expect_download() as info:
        page.get_by_role("link", name="Perfetto", exact=True).click()
    document = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert info.value.suggested_filename == f"run-{run.pk}.chrome.json"
    placed = run.steps.exclude(started_at=None, duration_ms=None).count()
    assert 0 < placed < run.step_count  # a pending step has no time to be drawn at
    assert sum(event["ph"] == "X" for event in document["traceEvents"]) == 1 + placed
