"""The runs list: filters, htmx fragments, keyset pages, live rows."""

from datetime import timedelta
from datetime import timezone as dt_timezone

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from tests.factories import make_runs, recount_failure_causes
from traces.ingest.loader import ingest_paths
from traces.models import Run, Step
from traces.pagination import encode_cursor
from traces.templatetags.traces_extras import ESTIMATED_TITLE

pytestmark = pytest.mark.django_db
URL = reverse("traces:run-list")


def test_lists_the_samples_with_counts(client, samples):
    ingest_paths([samples / "greentic", samples / "runs"])
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "weather_bot.main" in html and "sync_stripe" in html
    assert f"{Run.objects.count()} runs" in html
    assert "<html" in html


def test_htmx_request_gets_only_the_rows(client):
    make_runs(3)
    response = client.get(URL, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="run-rows"' in html and "<html" not in html and "run 2" in html
    assert response["Vary"] == "HX-Request"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "failed"}, {"bad 0"}),
        ({"format": "greentic"}, {"green 0"}),
        ({"type": "hourly"}, {"green 0"}),
        ({"q": "BAD"}, {"bad 0"}),
        ({"q": "boom"}, {"bad 0"}),
    ],
)
def test_filters_narrow_the_list(client, query, expected):
    make_runs(2, name="good")
    make_runs(1, status="failed", name="bad 0")
    Run.objects.filter(status="failed").update(error="boom in step 3")
    make_runs(1, format="greentic", name="green 0", type="hourly")
    response = client.get(URL, query)
    names = {run.name for run in response.context["page"].items}
    assert names == expected


def test_time_range_filter(client):
    runs = make_runs(5)
    since = runs[2].started_at.strftime("%Y-%m-%dT%H:%M")
    response = client.get(URL, {"since": since, "sort": "started"})
    assert [r.name for r in response.context["page"].items] == ["run 2", "run 3", "run 4"]


@pytest.mark.parametrize(
    ("since", "expected"),
    [("90m", {"recent"}), ("now-90m", {"recent"}), ("2h", {"recent", "older"}), ("7d", None)],
)
def test_a_relative_time_range_counts_back_from_now(client, since, expected):
    recent, older, old = make_runs(3)
    now = timezone.now()
    Run.objects.filter(pk=recent.pk).update(started_at=now - timedelta(minutes=30), name="recent")
    Run.objects.filter(pk=older.pk).update(started_at=now - timedelta(minutes=100), name="older")
    Run.objects.filter(pk=old.pk).update(started_at=now - timedelta(days=30), name="old")
    response = client.get(URL, {"since": since})
    assert response.status_code == 200
    names = {run.name for run in response.context["page"].items}
    assert names == (expected or {"recent", "older"})
    # The box keeps the relative value, so a refresh or a bookmark stays "the last 90 minutes".
    assert f'name="since" value="{since}"' in response.content.decode()


def test_the_time_presets_keep_the_other_filters_and_mark_the_current_one(client):
    runs = make_runs(3)
    cursor = encode_cursor(runs[1].started_at, runs[1].pk)
    html = client.get(URL, {"status": "failed", "since": "24h", "after": cursor}).content.decode()
    presets = html[html.index('class="time-presets"') :]
    presets = presets[: presets.index("</span>")]
    assert 'href="?status=failed&amp;since=1h">last 1 h</a>' in presets
    assert 'href="?status=failed&amp;since=24h" aria-current="true">last 24 h</a>' in presets
    assert 'href="?status=failed">any time</a>' in presets


def test_the_api_takes_relative_times_too(client):
    (run,) = make_runs(1)
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    make_runs(1, name="ancient")
    answer = client.get("/api/runs", {"since": "1h"}).json()
    assert [item["id"] for item in answer["items"]] == [run.pk]
    too_far = client.get("/api/runs", {"since": "9999999w"})
    assert too_far.status_code == 400 and "years 1 to 9999" in too_far.content.decode()


def test_the_first_page_polls_for_new_runs_and_says_how_many_came(client):
    make_runs(2, name="before")
    page = client.get(URL, {"status": "failed"})
    newest = page.context["newest_id"]
    assert 'hx-trigger="every 30s"' in page.content.decode()
    poll = reverse("traces:run-list-new")
    quiet = client.get(poll, {"status": "failed", "seen": newest}).content.decode()
    assert 'id="new-runs"' in quiet and "new run" not in quiet
    make_runs(3, status="failed", name="after")
    make_runs(4, name="after but succeeded")
    news = " ".join(client.get(poll, {"status": "failed", "seen": newest}).content.decode().split())
    assert "3 new runs since this list was shown: show them" in news
    # The link shows the list with its filters, without the poll's own parameter.
    assert f'href="{URL}?status=failed"' in news
    assert f"seen={newest}" in news  # the poll goes on counting from the same run


def test_a_later_page_does_not_poll_and_a_bad_poll_says_why(client):
    runs = make_runs(3)
    cursor = encode_cursor(runs[1].started_at, runs[1].pk)
    assert client.get(URL, {"after": cursor}).context["newest_id"] is None
    bad = client.get(reverse("traces:run-list-new"), {"seen": "-1"})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        {"status": "nope"},
        {"format": "xml"},
        {"since": "yesterday"},
        {"after": "!!"},
        {"in_source": "left"},
        {"since": "2026-03-02", "until": "2026-03-01"},
        {"after": "bm90IGpzb24", "before": "bm90IGpzb24"},
    ],
)
def test_bad_filters_are_a_400_with_a_message(client, query):
    response = client.get(URL, query)
    assert response.status_code == 400
    assert "could not be answered" in response.content.decode()


@pytest.mark.parametrize("since", ["yesterday", "-1h", "1y"])
def test_a_time_that_is_not_one_says_which_forms_are_taken(client, since):
    html = client.get(URL, {"since": since}).content.decode()
    assert "Give a time back from now (15m, 1h, 24h, 7d, 2w, now-1h)" in html
    assert "Enter a valid date/time." not in html


def test_a_backwards_time_range_or_two_cursors_say_why(client):
    backwards = client.get(URL, {"since": "2026-03-02", "until": "2026-03-01"})
    assert "“From” is after “To”." in backwards.content.decode()
    (run,) = make_runs(1)
    cursor = encode_cursor(run.started_at, run.pk)
    both = client.get(URL, {"after": cursor, "before": cursor})
    assert both.status_code == 400
    assert "Give one page cursor, not both." in both.content.decode()


def test_stale_runs_are_labelled_and_filterable(client, settings):
    make_runs(1, status="running", name="quiet")
    Run.objects.update(source_updated_at=timezone.now() - timedelta(hours=3))
    make_runs(1, status="running", name="busy")
    Run.objects.filter(name="busy").update(source_updated_at=timezone.now())
    page = client.get(URL).content.decode()
    assert "stale" in page
    stale = client.get(URL, {"status": "stale"}).context["page"].items
    assert [run.name for run in stale] == ["quiet"]


def test_the_summary_says_how_many_running_runs_are_stale(client):
    make_runs(2, status="running", name="quiet")
    Run.objects.update(source_updated_at=timezone.now() - timedelta(hours=3))
    summary = " ".join(client.get(URL).content.decode().split())
    assert "· 2 running, all stale" in summary
    make_runs(1, status="running", name="busy")
    Run.objects.filter(name="busy").update(source_updated_at=timezone.now())
    summary = " ".join(client.get(URL).content.decode().split())
    assert "· 3 running, 2 stale" in summary
    Run.objects.filter(name="quiet").update(source_updated_at=timezone.now())
    summary = " ".join(client.get(URL).content.decode().split())
    assert "· 3 running" in summary and "stale</" not in summary.split("· 3 running")[1][:30]


def test_runs_no_longer_in_their_source_are_tagged_and_filterable(client):
    make_runs(2, name="current")
    make_runs(1, name="history")
    Run.objects.filter(name="history").update(left_source_at=timezone.now())
    html = client.get(URL).content.decode()
    assert html.count(">left source</span>") == 1
    assert 'name="in_source"' in html and "no longer in its source" in html
    left = client.get(URL, {"in_source": "no"})
    assert [run.name for run in left.context["page"].items] == ["history"]
    assert ">left source</span>" in left.content.decode()
    assert left.context["summary"]["total"] == 1
    held = client.get(URL, {"in_source": "yes"}).context["page"].items
    assert {run.name for run in held} == {"current"} and len(held) == 2


def test_live_running_rows_poll_and_finished_rows_do_not(client):
    make_runs(1, status="running", name="live")
    Run.objects.update(source_updated_at=timezone.now())
    run = Run.objects.get()
    html = client.get(URL).content.decode()
    assert reverse("traces:run-row", args=[run.pk]) in html and "every 5s" in html
    Run.objects.update(status="succeeded")
    row = client.get(reverse("traces:run-row", args=[run.pk]), headers={"HX-Request": "true"})
    assert row.status_code == 200 and "every 5s" not in row.content.decode()


def test_keyset_pages_cover_every_run_once_in_order(client):
    make_runs(120)
    seen, query = [], {}
    while True:
        page = client.get(URL, query).context["page"]
        seen += [run.name for run in page.items]
        if not page.next_cursor:
            break
        query = {"after": page.next_cursor}
    assert seen == [f"run {i}" for i in range(119, -1, -1)]
    back = client.get(URL, {"before": page.prev_cursor}).context["page"]
    assert [run.name for run in back.items] == [f"run {i}" for i in range(69, 19, -1)]


def test_sorting_with_missing_values_keeps_every_run(client):
    make_runs(60)
    Run.objects.filter(name__in=["run 3", "run 40"]).update(duration_ms=None)
    seen, query = [], {"sort": "-duration"}
    while True:
        page = client.get(URL, query).context["page"]
        seen += [run.name for run in page.items]
        if not page.next_cursor:
            break
        query = {"sort": "-duration", "after": page.next_cursor}
    assert len(seen) == 60 == len(set(seen))
    assert seen[-2:] == ["run 40", "run 3"]


def test_query_count_does_not_grow_with_runs(client, django_assert_num_queries):
    make_runs(3)
    # The page, its status summary, the type choices, the newest id the new-runs poll starts
    # from, and the failing-now strip (failed runs by type, failed steps).
    with django_assert_num_queries(6):
        client.get(URL)
    make_runs(300, name="more")
    with django_assert_num_queries(6):
        client.get(URL)


def row_of(html: str, run: Run) -> str:
    start = html.index(f'id="run-{run.pk}"')
    return html[start : html.index("</tr>", start)]


def test_estimated_times_are_marked_with_their_reason(client, samples, django_assert_num_queries):
    ingest_paths([samples / "greentic"])
    make_runs(1, name="recorded")
    with django_assert_num_queries(6):
        html = client.get(URL).content.decode()
    mark = f'<span class="estimated" title="{escape(ESTIMATED_TITLE)}">≈</span>'
    for run in Run.objects.all():
        row = row_of(html, run)
        # Greentic: the start and the duration are both estimates.
        assert row.count(mark) == (2 if run.format == "greentic" else 0)
        assert ("≈" in row) == run.times_estimated


def test_hostile_names_are_shown_as_text(client):
    make_runs(1, name='<script>alert(1)</script>"><img src=x onerror=alert(1)>')
    Run.objects.update(error="javascript:alert(1) \u202eevil", trigger="<b>t</b>")
    html = client.get(URL).content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>t</b>" not in html


def test_no_inline_scripts_or_styles_and_a_strict_csp(client):
    make_runs(2)
    response = client.get(URL)
    html = response.content.decode()
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in html and " style=" not in html and " onclick=" not in html


def test_a_bad_filter_over_htmx_shows_its_message_in_the_flash_area(client):
    response = client.get(URL, {"status": "nope"}, headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert response["HX-Retarget"] == "#flash" and response["HX-Reswap"] == "innerHTML"
    html = response.content.decode()
    assert "<html" not in html and "nope" in html


@pytest.mark.parametrize(
    "query",
    [{"since": "0001-01-01T00:00:00+23:59"}, {"until": "9999-12-31T23:59:00-23:59"}],
)
def test_times_past_the_calendar_edges_are_a_400_not_a_crash(client, query):
    response = client.get(URL, query)
    assert response.status_code == 400
    assert "years 1 to 9999" in response.content.decode()


def test_time_filters_with_offsets_are_compared_in_utc(client):
    runs = make_runs(3)
    since = runs[1].started_at.astimezone(dt_timezone(timedelta(hours=2))).isoformat()
    assert since.endswith("+02:00")
    response = client.get(URL, {"since": since, "sort": "started"})
    assert [r.name for r in response.context["page"].items] == ["run 1", "run 2"]


def test_failing_now_counts_recent_failed_runs_by_type_and_links_each_list(client):
    now = timezone.now()
    spec = [("nightly", 10), ("nightly", 50), ("nightly", 300), ("billing", 100), ("old", 60 * 30)]
    for run_type, minutes_ago in spec:
        (run,) = make_runs(1, status="failed", type=run_type)
        Run.objects.filter(pk=run.pk).update(started_at=now - timedelta(minutes=minutes_ago))
    (ok,) = make_runs(1, type="quiet")
    Run.objects.filter(pk=ok.pk).update(started_at=now)
    failing = client.get(URL).context["failing"]
    assert [(t.run_type, t.last_hour, t.last_day) for t in failing.types] == [
        ("nightly", 2, 3),
        ("billing", 0, 1),
    ]
    html = client.get(URL).content.decode()
    assert f'href="{URL}?type=nightly&amp;status=failed&amp;since=1h">✗ 2</a>' in html
    assert f'href="{URL}?type=billing&amp;status=failed&amp;since=24h">✗ 1</a>' in html
    # Each link lists exactly what its number counts.
    listed = client.get(URL, {"type": "nightly", "status": "failed", "since": "1h"})
    assert len(listed.context["page"].items) == 2


def test_failing_now_counts_failed_steps_and_says_when_all_is_quiet(client):
    from tests.factories import make_steps

    quiet = client.get(URL).content.decode()
    assert (
        "Nothing failed in the last 24 h: no run that started in it failed, and no step "
        "failed in it." in quiet
    )
    (run,) = make_runs(1)
    steps = make_steps(run, 3, status="failed", error="boom")
    Step.objects.filter(pk=steps[0].pk).update(started_at=timezone.now() - timedelta(minutes=5))
    Step.objects.filter(pk=steps[1].pk).update(started_at=timezone.now() - timedelta(hours=5))
    Step.objects.filter(pk=steps[2].pk).update(started_at=timezone.now() - timedelta(days=5))
    recount_failure_causes()  # and their failed_at, as the store keeps it
    failing = client.get(URL).context["failing"]
    assert (failing.steps_last_hour, failing.steps_last_day) == (1, 2)
    text = " ".join(client.get(URL).content.decode().split())
    assert "1 in the last hour</a>" in text and "2 in the last 24 h</a>, grouped by cause" in text


def test_failing_now_counts_a_step_without_a_start_on_its_runs_time_as_the_list(client):
    """A greentic step has no start: the strip counts it on its run's time, as the
    causes box and the failed-steps list its number links to do (Step.failed_at)."""
    from tests.factories import make_steps

    (run,) = make_runs(1, status="failed")
    [step] = make_steps(run, 1, status="failed", error="boom")
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=20))
    Step.objects.filter(pk=step.pk).update(started_at=None)
    recount_failure_causes()
    failing = client.get(URL).context["failing"]
    assert (failing.steps_last_hour, failing.steps_last_day) == (1, 1)
    listed = client.get(reverse("traces:step-list"), {"status": "failed", "since": "1h"})
    assert [row.pk for row in listed.context["page"].items] == [step.pk]
    assert listed.context["groups"].steps_read == listed.context["count"] == 1


def test_failing_now_is_escaped_and_left_out_of_row_swaps(client):
    (run,) = make_runs(1, status="failed", type="<img src=x onerror=alert(1)>")
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now())
    html = client.get(URL).content.decode()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "type=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E" in html
    swap = client.get(URL, headers={"HX-Request": "true"})
    assert swap.context["failing"] is None and "Failing now" not in swap.content.decode()


def test_failing_now_counts_steps_as_the_failed_list_does_and_links_only_what_it_can(client):
    from tests.factories import make_steps

    (run,) = make_runs(1, status="failed", type="")
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now())
    steps = make_steps(run, 2, status="failed", error="boom")
    Step.objects.filter(run=run).update(started_at=timezone.now(), failed_at=timezone.now())
    Step.objects.filter(pk=steps[0].pk).update(synthetic=True)  # a grouping step
    failing = client.get(URL).context["failing"]
    assert (failing.steps_last_hour, failing.steps_last_day) == (1, 1)
    html = " ".join(client.get(URL).content.decode().split())
    # No runs-list filter means "no type": the row says its numbers without a link.
    assert '<th scope="row" class="name">(no type)</th>' in html
    assert '<span class="c-fail">✗ 1</span>' in html
