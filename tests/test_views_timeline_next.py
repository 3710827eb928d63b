"""The timeline's "next steps" says how many steps the next windows hold: counted
from an index range and capped, so the count costs the same on a big run."""

from __future__ import annotations

import re

import pytest

from tests.test_timeline_zoom import next_url, row_keys, timeline_url, with_finishes
from tests.test_views_run_detail import add_steps, make_run, page
from traces.models import Step
from traces.queries import timeline_count

pytestmark = pytest.mark.django_db


def next_count(html: str) -> str | None:
    found = re.search(r"next steps ›(?: <span class=\"muted\">\(([^)]*)\)</span>)?</a>", html)  # noqa: RUF001
    assert found, "no next steps link"
    return found.group(1)


def timed_run(steps: int = 700):
    run = make_run()
    add_steps(run, steps)
    with_finishes(run)
    return run


def test_the_whole_runs_next_steps_say_how_many_remain(client):
    run = timed_run()
    html = page(client, timeline_url(run))
    assert len(row_keys(html)) == 300
    assert next_count(html) == "400 more"
    second = page(client, next_url(html))
    assert next_count(second) == "100 more"
    assert "next steps" not in page(client, next_url(second))


def test_a_zoomed_window_counts_what_remains_in_it(client):
    run = timed_run()
    html = page(client, timeline_url(run), from_ms="1000", to_ms="27000")
    shown = row_keys(html)
    second = row_keys(page(client, next_url(html)))
    third = row_keys(page(client, next_url(page(client, next_url(html)))))
    assert next_count(html) == f"{len(second) + len(third)} more in this window"
    assert len(shown) == 300


def test_failed_only_counts_the_failed_subtrees(client):
    run = timed_run()
    Step.objects.filter(run=run, seq__gt=200).update(failed_subtree=True, status="failed")
    html = page(client, timeline_url(run), failed="1")
    assert len(row_keys(html)) == 300 and next_count(html) == "200 more"


def test_the_count_stops_at_its_cap(client, monkeypatch, django_assert_max_num_queries):
    monkeypatch.setattr(timeline_count, "REMAINING_CAP", 50)
    run = timed_run()
    # 9, and since 15c the window's repeated names (the tree's sibling labels).
    with django_assert_max_num_queries(10):
        html = page(client, timeline_url(run))
    assert next_count(html) == "50+ more"


def test_a_timeline_without_times_counts_in_run_order(client):
    run = make_run(started_at=None, finished_at=None)
    add_steps(run, 650, untimed=True)
    html = page(client, timeline_url(run))
    assert "Steps #1–#300 in run order" in html and next_count(html) == "350 more"  # noqa: RUF001
    assert next_count(page(client, next_url(html))) == "50 more"
