"""Runs whose times are estimated (greentic: the file's time) in the runs list: marked
as such, and listed after the timed runs newest (or oldest) first, so that a folder of
files copied today does not crowd today's timed runs off the first page."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import F
from django.urls import reverse

from tests.factories import make_runs
from traces import queries
from traces.ingest.loader import ingest_paths
from traces.models import Run

URL = reverse("traces:run-list")
pytestmark = pytest.mark.django_db


def estimated_runs(count: int) -> list[Run]:
    """Runs stamped with a file's time that is newer than any timed run's."""
    runs = make_runs(count, format="greentic", type="flow")
    now = datetime.now(UTC)
    for index, run in enumerate(runs):
        Run.objects.filter(pk=run.pk).update(
            times_estimated=True, started_at=now - timedelta(seconds=index)
        )
    return runs


def walk(client, query: dict) -> list[int]:
    seen, cursor = [], None
    for _ in range(30):
        page = client.get(URL, {**query, **({"after": cursor} if cursor else {})}).context["page"]
        seen.extend(run.pk for run in page.items)
        cursor = page.next_cursor
        if not cursor:
            return seen
    raise AssertionError("too many pages")


@pytest.mark.parametrize("sort", ["-started", "started"])
def test_estimated_runs_come_after_the_timed_ones_on_every_page(client, monkeypatch, sort):
    monkeypatch.setattr(queries.runs, "PAGE_SIZE", 3)
    timed = make_runs(5)  # started BASE_TIME + n minutes, a month before the estimates
    estimated = estimated_runs(4)
    (untimed,) = make_runs(1)
    Run.objects.filter(pk=untimed.pk).update(started_at=None)
    seen = walk(client, {"sort": sort})
    timed_order = [
        run.pk
        for run in Run.objects.filter(pk__in=[run.pk for run in timed]).order_by(
            "started_at" if sort == "started" else "-started_at"
        )
    ]
    # Timed runs by their start; then the others by when they were written (their
    # id): newest first, or oldest first.
    assert seen[:5] == timed_order
    others = sorted([untimed.pk, *(run.pk for run in estimated)], reverse=sort == "-started")
    assert seen[5:] == others


def test_estimated_runs_are_marked_in_the_row_and_the_order_is_said(client):
    make_runs(2)
    estimated_runs(1)
    response = client.get(URL)
    html = response.content.decode()
    assert html.count("estimated: the file's time") == 1
    assert 'class="estimated" title="estimated from the file' in html
    assert "are listed after the timed ones" in html
    # Other sorts say nothing of it.
    assert "listed after" not in client.get(URL, {"sort": "-duration"}).content.decode()


def test_greentic_samples_do_not_crowd_out_timed_runs(client, samples):
    ingest_paths([samples / "greentic", samples / "runs"])
    estimated = Run.objects.filter(times_estimated=True)
    timed = Run.objects.filter(times_estimated=False).exclude(started_at=None)
    assert estimated.exists() and timed.exists()
    # The samples' files are newer than the runs they hold: by start alone they would
    # come first.
    newest = Run.objects.order_by(F("started_at").desc(nulls_last=True)).first()
    assert newest.times_estimated
    items = client.get(URL).context["page"].items
    flags = [run.times_estimated for run in items]
    assert flags == sorted(flags)  # every timed run before every estimated one
    assert items[0].started_at == timed.order_by(F("started_at").desc()).first().started_at


def test_the_api_lists_in_the_same_order(client):
    timed = make_runs(2)
    estimated_runs(1)
    body = client.get("/api/runs").json()
    ids = [run["id"] for run in body["items"]]
    assert ids[:2] == [timed[1].pk, timed[0].pk]
    assert body["items"][2]["times_estimated"] is True


def test_a_filtered_list_keeps_the_order(client):
    timed = make_runs(2, status="failed")
    (estimated,) = estimated_runs(1)
    Run.objects.filter(pk=estimated.pk).update(status="failed")
    items = client.get(URL, {"status": "failed"}).context["page"].items
    assert [run.pk for run in items] == [timed[1].pk, timed[0].pk, estimated.pk]
