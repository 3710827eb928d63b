"""The timeline zoomed to a time window (`?from_ms=&to_ms=`): the steps that overlap
it, read through bounded index ranges (the same queries at 100,000 steps as at 10),
the zoom and pan links, the minimap of the whole run, 400s on windows that cannot be,
escaping, and the formats without timestamps saying why there is nothing to zoom."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.test_views_run_detail import HX, T0, add_steps, fragment, make_run, page
from traces.ingest import minimaps
from traces.ingest.loader import ingest_paths
from traces.models import Run, Step
from traces.queries.timeline import MINIMAP_SAMPLE, time_axis

pytestmark = pytest.mark.django_db


def timeline_url(run: Run) -> str:
    return f"/runs/{run.pk}/timeline/"


def zoom_links(html: str) -> dict:
    """The zoom controls' links by name, as their query parameters."""
    links = re.findall(r'href="([^"]*)" hx-get="[^"]*" data-zoom="(\w+)"', html)
    return {name: parse_qs(urlparse(url.replace("&amp;", "&")).query) for url, name in links}


def shapes(html: str, css: str) -> int:
    """How many rectangles the minimap's <path> of that class draws."""
    found = re.search(rf'<path class="{css}" d="([^"]*)"', html)
    return found.group(1).count("z") if found else 0


def next_url(html: str) -> str:
    return (
        re.search(r'href="([^"]*)" hx-get="[^"]*">next steps', html).group(1).replace("&amp;", "&")
    )


def row_keys(html: str) -> list[str]:
    return re.findall(r'<li class="timeline-row[^"]*"[^>]*data-key="([^"]*)"', html)


def overlap_recount(run: Run, from_ms: float, to_ms: float) -> set[str]:
    """The steps overlapping the window, counted the slow way: every step in Python."""
    start, _ = time_axis(run)
    low, high = start + timedelta(milliseconds=from_ms), start + timedelta(milliseconds=to_ms)
    until = run.live_until
    keys = set()
    for step in Step.objects.filter(run=run, started_at__isnull=False):
        if step.finished_at is not None:
            end = step.finished_at
        elif step.duration_ms is not None:
            end = step.started_at + timedelta(milliseconds=step.duration_ms)
        elif step.status == "running":
            end = until or timezone.now()
        else:
            continue
        if step.started_at <= high and end >= low:
            keys.add(step.key)
    return keys


def with_finishes(run: Run) -> None:
    """finished_at = started_at + duration, as ingest writes it."""
    for step in Step.objects.filter(run=run, started_at__isnull=False, duration_ms__isnull=False):
        step.finished_at = step.started_at + timedelta(milliseconds=step.duration_ms)
        step.save(update_fields=["finished_at"])


# --- a small run ----------------------------------------------------------------------


@pytest.fixture
def nested_run():
    """A long step (0-100 s) holding nothing, and 200 short steps after one another
    (each 30 ms every 40 ms), one of them holding 3 steps."""
    run = make_run()
    long = add_steps(run, 1, name="long wait", duration_ms=100_000.0)[0]
    Step.objects.filter(pk=long.pk).update(key="long", position=10_000)
    shorts = add_steps(run, 200, name="short")
    holder = shorts[100]
    add_steps(run, 3, parent=holder, name="inner")
    with_finishes(run)
    return run


def test_the_whole_run_shows_the_zoom_controls_and_the_minimap(client, nested_run):
    html = page(client, timeline_url(nested_run))
    assert "data-minimap" in html and "data-timeline" in html
    # At the whole run, "zoom in" is a link; "zoom out", the pans and reset are not.
    assert re.search(r'<a class="button" href="[^"]*from_ms=[^"]*" [^>]*data-zoom="in"', html)
    for name in ("out", "left", "right", "reset"):
        assert f'<span class="button" aria-disabled="true" data-zoom="{name}"' in html
    # The minimap's window covers the whole axis.
    assert re.search(r'class="mm-window" data-brush x="0.00" y="0" width="1000.00"', html)
    # Density bars and no more than the buckets, whatever the run's size.
    assert 0 < shapes(html, "mm-bar") <= 200
    assert set(row_keys(html)) == overlap_recount(nested_run, 0, 100_000)


def test_a_window_shows_the_steps_overlapping_it_and_the_long_one_begun_before(client, nested_run):
    html = page(client, timeline_url(nested_run), from_ms="4000", to_ms="4100")
    keys = row_keys(html)
    assert set(keys) == overlap_recount(nested_run, 4000, 4100)
    assert "long" in keys  # began at 0, still running at 4 s
    assert "1 began before it" in html
    # Start order: the long step first.
    assert keys[0] == "long"
    # The bars are clipped to the window: the long step fills it.
    long_row = html[html.index('data-key="long"') :]
    assert re.search(r'<rect class="succeeded" x="0.000" y="0" width="100.000"', long_row)
    # The axis is labelled from the window's start.
    assert "+4s" in html.replace("+4.0s", "+4s") or "+4 s" in html or "+4.00s" in html


def test_zoom_and_pan_links_move_the_window(client, nested_run):
    html = page(client, timeline_url(nested_run), from_ms="40000", to_ms="60000")
    by_name = zoom_links(html)
    assert by_name["in"] == {"from_ms": ["45000"], "to_ms": ["55000"]}
    assert by_name["out"] == {"from_ms": ["30000"], "to_ms": ["70000"]}
    assert by_name["left"] == {"from_ms": ["30000"], "to_ms": ["50000"]}
    assert by_name["right"] == {"from_ms": ["50000"], "to_ms": ["70000"]}
    assert by_name["reset"] == {}
    # Pan stops at the axis's ends; zooming out past the whole run is the whole run.
    html = page(client, timeline_url(nested_run), from_ms="10000", to_ms="60000")
    by_name = zoom_links(html)
    assert by_name["left"] == {"from_ms": ["0"], "to_ms": ["50000"]}
    assert by_name["out"] == {}


def test_the_window_is_kept_by_the_step_links_and_the_pages(client, nested_run):
    html = page(client, timeline_url(nested_run), from_ms="4000", to_ms="4100")
    kept = r'href="/runs/\d+/steps/[^"]*\?tab=timeline&amp;from_ms=4000&amp;to_ms=4100"'
    assert re.search(kept, html)
    # A reload of a step's URL from the timeline keeps the window.
    step = Step.objects.get(run=nested_run, key="long")
    html = page(client, f"{step.get_absolute_url()}", tab="timeline", from_ms="4000", to_ms="4100")
    assert 'id="step-panel"' in html
    assert set(row_keys(html)) == overlap_recount(nested_run, 4000, 4100)


def test_folding_toggles_are_on_the_rows_that_hold_steps(client, nested_run):
    html = page(client, timeline_url(nested_run), from_ms="0", to_ms="4100")
    holder = Step.objects.get(run=nested_run, name="short", position=100)
    rows = re.findall(r'<li class="timeline-row[^>]*>.*?</li>', html, re.S)
    with_fold = [row for row in rows if "data-fold" in row]
    assert len(with_fold) == 1 and f'data-key="{holder.key}"' in with_fold[0]
    inner = [row for row in rows if f'data-parent="{holder.key}"' in row]
    assert len(inner) == 3


def test_windows_are_keyset_pages_in_start_order(client):
    run = make_run()
    add_steps(run, 700)
    with_finishes(run)
    html = page(client, timeline_url(run), from_ms="1000", to_ms="27000")
    keys = row_keys(html)
    assert len(keys) == 300 and keys[0] == "25"  # step 24 (960-990 ms) ends before 1 s
    more = next_url(html)
    assert "from_ms=1000" in more and "to_ms=27000" in more
    second = row_keys(page(client, more))
    assert second[0] == "325" and len(second) == 300
    last = next_url(page(client, next_url(html)))
    third = row_keys(page(client, last))
    assert set(keys) | set(second) | set(third) == overlap_recount(run, 1000, 27000)


def test_a_running_run_keeps_its_open_steps_to_its_latest_moment(client):
    started = timezone.now() - timedelta(minutes=10)
    run = make_run(status="running", started_at=started, finished_at=None, duration_ms=None)
    Run.objects.filter(pk=run.pk).update(source_updated_at=timezone.now())
    Step.objects.create(
        run=run, key="open", seq=1, position=0, depth=0, name="still going",
        status="running", started_at=started + timedelta(seconds=1),
    )  # fmt: skip
    run.refresh_from_db()
    # The last minute of ten: the open step is in it, and fills it.
    html = page(client, timeline_url(run), from_ms="540000", to_ms="600000")
    assert row_keys(html) == ["open"]
    assert re.search(r'<rect class="running" x="0.000" y="0" width="100.000"', html)
    assert "to its latest known moment" in html


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from_ms": "abc"}, "Enter a number"),
        ({"to_ms": "1e400"}, ""),
        ({"from_ms": "nan"}, ""),
        ({"from_ms": "inf"}, ""),
        ({"from_ms": "-5"}, "greater than or equal to 0"),
        ({"from_ms": "500", "to_ms": "500"}, "below to_ms"),
        ({"from_ms": "900", "to_ms": "100"}, "below to_ms"),
        ({"from_ms": "999999999"}, "after the end of the run"),
        ({"from_ms": "1", "after": "garbage"}, "start again"),
    ],
)
def test_a_window_that_cannot_be_is_a_400(client, nested_run, params, message):
    for headers in ({}, HX):
        response = client.get(timeline_url(nested_run), params, headers=headers)
        assert response.status_code == 400, params
        if message:
            assert message.lower() in response.content.decode().lower()


def test_names_are_escaped_on_a_zoomed_timeline(client):
    run = make_run(name="<script>alert(1)</script>")
    steps = add_steps(run, 2, name='"><img src=x onerror=alert(2)>')
    Step.objects.filter(pk=steps[0].pk).update(key='k"><svg onload=alert(3)>', child_count=1)
    html = page(client, timeline_url(run), from_ms="0", to_ms="50")
    assert "<script>alert(1)" not in html and "<img src=x" not in html and "<svg onload" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "Hide the steps inside &quot;&gt;&lt;img" in html


def test_the_htmx_swap_is_the_tab_area(client, nested_run):
    html = fragment(client, timeline_url(nested_run), from_ms="4000", to_ms="4100")
    assert html.lstrip().startswith('<div id="run-tabs"')
    assert "data-minimap" in html


def test_the_summary_counts_the_overlapping_steps_apart_from_the_unstarted(client, samples):
    """sync_stripe's failed run: 6 steps with times and reconcile_balances skipped
    without one. The line said "7 steps overlap this window, ..., then 1 with no
    start time": 8 for the 7 rows listed."""
    ingest_paths([samples])
    run = Run.objects.get(format="runs", status="failed", type="sync_stripe")
    html = " ".join(client.get(timeline_url(run)).content.decode().split())
    assert len(re.findall(r'<li class="timeline-row ', html)) == run.step_count == 7
    assert "6 steps overlap this window, in start order, then 1 with no start time." in html


# --- every format's samples -------------------------------------------------------------


def test_every_sample_format_zooms_or_says_why_not(client, samples):
    ingest_paths([samples])
    formats = sorted(set(Run.objects.values_list("format", flat=True)))
    assert {"greentic", "runs", "workflow", "otlp", "traceos", "duckflux"} <= set(formats)
    for name in formats:
        run = max(Run.objects.filter(format=name), key=lambda r: r.step_count)
        html = page(client, timeline_url(run))
        if name == "greentic":
            assert "data-minimap" not in html
            assert "No time axis to zoom" in html
            continue
        assert "data-minimap" in html, name
        start, end = time_axis(run)
        span = (end - start).total_seconds() * 1000
        if span < 4:
            continue
        lo, hi = span / 3, 2 * span / 3
        html = page(client, timeline_url(run), from_ms=f"{lo:.3f}", to_ms=f"{hi:.3f}")
        shown = set(row_keys(html))
        recount = overlap_recount(run, float(f"{lo:.3f}"), float(f"{hi:.3f}"))
        assert shown == recount or (len(shown) == 300 and shown <= recount), name


# --- 100,000 steps ------------------------------------------------------------------------


def big_run(roots: int, children: int) -> Run:
    """`roots` steps of 100 s one after another, each holding `children` steps of 80 ms
    every 100 ms; a few failed."""
    run = make_run(finished_at=T0 + timedelta(seconds=100 * roots), duration_ms=100_000.0 * roots)
    rows, seq = [], 0
    for r in range(roots):
        seq += 1
        begin = T0 + timedelta(seconds=100 * r)
        rows.append(
            Step(
                run=run, key=f"r{r}", seq=seq, position=r, depth=0, name=f"batch {r}",
                status="succeeded", started_at=begin, finished_at=begin + timedelta(seconds=100),
                duration_ms=100_000.0, child_count=children,
            )
        )  # fmt: skip
    Step.objects.bulk_create(rows, batch_size=2_000)
    parents = dict(Step.objects.filter(run=run).values_list("key", "pk"))
    rows = []
    for r in range(roots):
        for c in range(children):
            seq += 1
            begin = T0 + timedelta(seconds=100 * r, milliseconds=100 * c)
            failed = (r * children + c) % 997 == 0
            rows.append(
                Step(
                    run=run, parent_id=parents[f"r{r}"], key=f"r{r}.{c}", seq=seq, position=c,
                    depth=1, name=f"item {c}", status="failed" if failed else "succeeded",
                    started_at=begin, finished_at=begin + timedelta(milliseconds=80),
                    duration_ms=80.0, failed_subtree=failed,
                )
            )  # fmt: skip
    Step.objects.bulk_create(rows, batch_size=5_000)
    Run.objects.filter(pk=run.pk).update(
        step_count=seq, steps_started_at=T0, steps_finished_at=T0 + timedelta(seconds=100 * roots)
    )
    # The minimap's read model, as the store keeps it for a run this big.
    minimaps.store([(run.pk, seq)])
    run.refresh_from_db()
    return run


def queries_of(client, url, **params) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as captured:
        html = page(client, url, **params)
    return html, len(captured)


def test_100000_steps_cost_the_queries_10_steps_do(client):
    small = big_run(2, 4)
    big = big_run(100, 1_000)
    assert big.step_count == 100_100
    for params in ({}, {"from_ms": "100050", "to_ms": "100550"}, {"from_ms": "0", "to_ms": "9000"}):
        _, small_count = queries_of(client, timeline_url(small), **params)
        html, big_count = queries_of(client, timeline_url(big), **params)
        assert big_count <= small_count, params  # the small run reaches its last page
        assert len(row_keys(html)) <= 300
    # The middle half second of root 50: the root and its 5 children that overlap.
    html = page(client, timeline_url(big), from_ms="5000050", to_ms="5000550")
    assert set(row_keys(html)) == {"r50", *(f"r50.{c}" for c in range(6))}
    # The minimap: estimated from a sample, with the failed steps' ticks, bounded.
    assert 0 < shapes(html, "mm-bar") <= 200
    assert html.count("<path ") == 2  # the columns and the ticks: one element each
    assert f"estimated from {MINIMAP_SAMPLE:,} steps" in html
    failed = Step.objects.filter(run=big, status="failed").count()
    assert 0 < shapes(html, "mm-failed") <= failed


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SQLite's julianday is a float")
def test_the_minimap_s_start_times_are_the_exact_times_rounded_once():
    """The database gives each start as ms since the epoch, rounded to a float once:
    on PostgreSQL cast from the exact numeric, as float() of its Decimal would be."""
    from decimal import Decimal

    from traces.queries.timeline import _EPOCH, _epoch_ms

    run = make_run(step_count=7)
    steps = add_steps(run, 7)
    for index, step in enumerate(steps):
        step.started_at = T0 + timedelta(microseconds=123_457 * index + 999_999 * index**3)
        step.save(update_fields=["started_at"])
    got = _epoch_ms(Step.objects.filter(run=run).order_by("seq"))
    exact = [
        float(Decimal((step.started_at - _EPOCH) // timedelta(microseconds=1)) / 1000)
        for step in steps
    ]
    assert got == exact


def test_the_whole_run_reads_no_step_begun_before_its_first_start(client):
    """The whole run's first page: with the run's first step start noted, no step can
    have begun before the window, so the two reads of those that did are not made; a
    step that began before the run's own start is still listed."""
    run = big_run(3, 20)
    add_steps(run, 1, name="warm-up")
    early = Step.objects.get(run=run, name="warm-up")
    Step.objects.filter(pk=early.pk).update(
        started_at=T0 - timedelta(seconds=30),
        finished_at=T0 + timedelta(seconds=5),
        duration_ms=35_000.0,
    )
    url = timeline_url(run)
    Run.objects.filter(pk=run.pk).update(steps_started_at=T0 - timedelta(seconds=30))
    assert "warm-up" in timeline_section(queries_of(client, url)[0])
    Step.objects.filter(pk=early.pk).delete()
    # A bound below the first start (the reads made), then the first start itself.
    Run.objects.filter(pk=run.pk).update(steps_started_at=T0 - timedelta(hours=1))
    read, read_count = queries_of(client, url)
    Run.objects.filter(pk=run.pk).update(steps_started_at=T0)
    skipped, skipped_count = queries_of(client, url)
    assert timeline_section(skipped) == timeline_section(read)
    assert len(row_keys(skipped)) == 63
    assert skipped_count == read_count - 2


def timeline_section(html: str) -> str:
    return re.search(r'<section class="timeline-wrap".*?</section>', html, re.S).group(0)


def test_the_minimap_s_tick_places_are_the_clamped_rounded_fractions():
    import math
    import random

    from traces.queries.timeline import tick_places

    def reference(starts, origin, span):
        return sorted({round(min(max((ms - origin) / span, 0.0), 1.0) * 1000, 1) for ms in starts})

    pick = random.Random(13)
    origin, span = 1_789_000_000_123.456, 86_400_000.0
    starts = [origin + pick.uniform(-0.1, 1.1) * span for _ in range(5_000)]
    starts += [
        origin,
        origin + span,
        origin - 0.0,
        origin + span * 0.00005,
        origin + span * 0.99995,
    ]
    got = tick_places(starts, origin, span)
    assert got == reference(starts, origin, span)
    assert got[0] == 0.0 and got[-1] == 1000.0 and len(got) == len(set(got))
    # A start at the axis's origin in a negative zero's sign, as min() and max() kept it.
    assert [math.copysign(1, x) for x in tick_places([-0.0], 0.0, 1.0)] == [
        math.copysign(1, x) for x in reference([-0.0], 0.0, 1.0)
    ]
