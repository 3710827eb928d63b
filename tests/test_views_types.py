"""Run types: the list, one type's trends (SVG charts and their table, slowest and most
failing steps), their API twins, and the run page's comparison with its type; on the
samples and on generated runs over days whose percentiles are known."""

import math
import re
from collections import Counter
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse

from tests.factories import BASE_TIME
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.ingest.records import RunRecord, StepRecord
from traces.ingest.type_trends import ERROR
from traces.models import Run, RunCount

pytestmark = pytest.mark.django_db

TYPE = "nightly-sync"
DAYS = 5
PER_DAY = 20


def write(external_id, *, run_type=TYPE, status="succeeded", started=BASE_TIME, duration=1000.0,
          steps=(), format="otlp"):  # fmt: skip
    record = RunRecord(
        format=format, external_id=external_id, type=run_type, status=status, started_at=started,
        duration_ms=None if status == "running" else duration, steps=list(steps),
    )  # fmt: skip
    return store.write_run(record, source_file=None, origin="").run_id


def nightly_runs() -> dict:
    """DAYS days of PER_DAY runs: on day d, durations (i + 1) · 100 · (d + 1) ms, so the
    nearest-rank p50 is 1,000 · (d + 1) ms and the p95 1,900 · (d + 1) ms; run 0 of
    each day failed, and one more run is still running on the last day. Its steps:
    `load` takes 10 s and never fails, `check` takes 10 ms and fails in failed runs."""
    for day in range(DAYS):
        for i in range(PER_DAY):
            failed = i == 0
            steps = [
                StepRecord(key="load", name="load", duration_ms=10_000.0),
                StepRecord(key="check", name="check", duration_ms=10.0,
                           status="failed" if failed else "succeeded"),
            ]  # fmt: skip
            write(
                f"n{day}-{i}",
                status="failed" if failed else "succeeded",
                started=BASE_TIME + timedelta(days=day, minutes=i),
                duration=(i + 1) * 100.0 * (day + 1),
                steps=steps,
            )
    write("running", status="running", started=BASE_TIME + timedelta(days=DAYS - 1, hours=2))
    return {"p50": [1000.0 * (d + 1) for d in range(DAYS)],
            "p95": [1900.0 * (d + 1) for d in range(DAYS)]}  # fmt: skip


def type_page(client, run_type=TYPE, **params):
    return client.get(reverse("traces:type-detail", args=[run_type]), params)


def close(value, expected) -> bool:
    return abs(value - expected) <= ERROR * expected + 1e-9


# --- one type's page ---------------------------------------------------------------------


def test_the_api_gives_each_days_counts_and_known_percentiles(client):
    expected = nightly_runs()
    data = client.get(f"/api/types/{TYPE}/trends").json()
    days = [b for b in data["buckets"] if b["runs"]]
    assert len(days) == DAYS and data["bucket"] == "day"
    for day, bucket in enumerate(days):
        assert bucket["start"] == (BASE_TIME + timedelta(days=day)).strftime("%Y-%m-%dT00:00:00Z")
        counts = {"succeeded": PER_DAY - 1, "failed": 1}
        if day == DAYS - 1:
            counts["running"] = 1
        assert bucket["counts"] == counts
        assert bucket["success_rate"] == pytest.approx((PER_DAY - 1) / PER_DAY)
        assert close(bucket["p50_ms"], expected["p50"][day])
        assert close(bucket["p95_ms"], expected["p95"][day])
    assert data["runs"] == DAYS * PER_DAY + 1
    durations = sorted((i + 1) * 100.0 * (d + 1) for d in range(DAYS) for i in range(PER_DAY))
    assert close(data["p50_ms"], durations[math.ceil(0.5 * len(durations)) - 1])
    assert close(data["p95_ms"], durations[math.ceil(0.95 * len(durations)) - 1])
    assert data["percentile_error"] == pytest.approx(ERROR)


def test_the_page_draws_the_days_as_svg_with_a_table(client):
    expected = nightly_runs()
    response = type_page(client)
    assert response.status_code == 200
    html = response.content.decode()
    svgs = re.findall(r"<svg .*?</svg>", html, re.S)
    assert len(svgs) == 3
    for svg in svgs:
        assert 'role="img"' in svg and "<title" in svg and "<desc" in svg
    runs_chart = svgs[0]
    assert runs_chart.count('<a href="/?') == DAYS  # a bar per day with runs, each a link
    assert runs_chart.count('class="bar-failed"') == DAYS
    assert runs_chart.count('class="bar-running"') == 1
    assert "style=" not in html and "<script>" not in html.split("</head>")[1]
    assert "charts.css" in html
    table = html[html.index("<details") : html.index("</details>")]
    rows = re.findall(r"<tr>\s*<td.*?</tr>", table, re.S)
    assert len(rows) == 30  # the 30 days up to its last run
    assert sum('<td class="num">20</td>' in row for row in rows) == DAYS - 1
    first_day = BASE_TIME.strftime("%Y-%m-%d")
    row = next(row for row in rows if first_day in row)
    assert "1.0s" in row and "1.9s" in row  # its p50 and p95 (within 2.2 %)
    assert expected["p50"][0] == 1000.0


def test_an_hour_bucket_and_a_range_choose_the_buckets(client):
    nightly_runs()
    last_day = BASE_TIME + timedelta(days=DAYS - 1)
    data = client.get(
        f"/api/types/{TYPE}/trends",
        {"bucket": "hour", "since": last_day.strftime("%Y-%m-%dT%H:%M"),
         "until": (last_day + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M")},
    ).json()  # fmt: skip
    assert [b["runs"] for b in data["buckets"]] == [20, 0, 1, 0, 0, 0]
    assert data["buckets"][2]["counts"] == {"running": 1}
    assert data["buckets"][2]["p50_ms"] is None  # a running run has no duration yet
    html = type_page(client, bucket="hour", since=last_day.strftime("%Y-%m-%d")).content.decode()
    assert "Runs per hour by status" in html


def test_filters_by_status_and_format_are_kept_in_the_links(client):
    nightly_runs()
    write("other-format", format="traceos", started=BASE_TIME)
    data = client.get(f"/api/types/{TYPE}/trends", {"status": "failed"}).json()
    assert data["counts"] == {"failed": DAYS}
    data = client.get(f"/api/types/{TYPE}/trends", {"format": "traceos"}).json()
    assert data["runs"] == 1
    html = type_page(client, status="failed", format="otlp").content.decode()
    assert "status=failed" in html and "format=otlp" in html
    assert 'class="bar-succeeded"' not in html


def test_the_slowest_and_most_failing_steps(client):
    nightly_runs()
    data = client.get(f"/api/types/{TYPE}/trends").json()
    slowest = [(s["name"], s["mean_ms"], s["steps"]) for s in data["slowest_steps"]]
    assert slowest == [("load", 10_000.0, DAYS * PER_DAY), ("check", 10.0, DAYS * PER_DAY)]
    failing = [(s["name"], s["failed"], s["failure_rate"]) for s in data["failing_steps"]]
    assert failing == [("check", DAYS, 1 / PER_DAY)]
    html = type_page(client).content.decode()
    section = html[html.index('id="failing-title"') :]
    assert (
        "name=check" in section
        and "status=failed" in section
        and "run_type=nightly-sync" in section
    )
    # Steps of runs outside the days shown are not counted.
    later = BASE_TIME + timedelta(days=DAYS - 1)
    data = client.get(f"/api/types/{TYPE}/trends", {"since": later.strftime("%Y-%m-%d")}).json()
    assert data["failing_steps"][0]["failed"] == 1


def test_an_unknown_type_is_a_404_page_and_bad_input_a_400(client):
    nightly_runs()
    response = type_page(client, "no such type")
    assert response.status_code == 404 and "No run type" in response.content.decode()
    assert client.get("/api/types/nope/trends").status_code == 404
    assert client.get("/types/a%00b/").status_code == 404
    assert client.get("/api/types/a%00b/trends").status_code == 400
    for params in (
        {"bucket": "week"},
        {"since": "yesterday"},
        {"since": "2026-11-05", "until": "2026-11-01"},
        {"bucket": "hour", "since": "2020-01-01", "until": "2026-01-01"},
        {"status": "stale"},
    ):
        response = type_page(client, **params)
        assert response.status_code == 400, params
        assert "could not be answered" in response.content.decode()
        api = client.get(f"/api/types/{TYPE}/trends", params)
        assert api.status_code == 400 and api.json()["detail"], params
    message = client.get(
        f"/api/types/{TYPE}/trends", {"bucket": "hour", "since": "2020-01-01"}
    ).json()["detail"]
    assert "at most 744" in message
    for params in ({"since": "0001-01-01", "until": "0001-01-02"}, {"until": "9999-12-31"},
                   {"since": "9999-12-31T23:59"}):  # fmt: skip
        assert type_page(client, **params).status_code == 200, params
        assert client.get(f"/api/types/{TYPE}/trends", params).status_code == 200, params


HOSTILE = ['<script>alert("x")</script>', "a/b/c", "100%25 & <b>", "\u02bbokina ‮evil", "x?y#z"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_type_names_are_escaped_and_reachable(client, name):
    write("h", run_type=name, steps=[StepRecord(key="1", name=f"<i>{name}</i>", status="failed")])
    listing = client.get(reverse("traces:type-list")).content.decode()
    assert "<script>alert" not in listing and "<i>" not in listing
    href = unescape(re.search(r'<a data-row-link href="([^"]+)"', listing).group(1))
    response = client.get(href)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert" not in html and "<i>" not in html
    assert client.get(reverse("api:type_trends", args=[name])).json()["type"] == name
    runs = client.get(reverse("traces:run-list")).content.decode()
    assert href in unescape(runs)


def test_type_page_queries_do_not_grow_with_runs_or_days(client, django_assert_max_num_queries):
    write("one", steps=[StepRecord(key="1", name="a")])
    with django_assert_max_num_queries(10) as few:
        type_page(client)
    nightly_runs()
    for index in range(30):
        write(f"more{index}", started=BASE_TIME - timedelta(days=index), steps=[
            StepRecord(key=str(k), name=f"step {k}") for k in range(5)])  # fmt: skip
    with django_assert_max_num_queries(len(few.captured_queries)):
        type_page(client)
    with django_assert_max_num_queries(4):
        client.get(reverse("traces:type-list"))


# --- the list -----------------------------------------------------------------------------


def test_the_list_counts_every_sample_type_and_links_its_page(client, samples):
    assert ingest_paths([samples]).failed == []
    expected = Counter(Run.objects.exclude(type="").values_list("type", flat=True))
    data = client.get("/api/types").json()
    assert {item["type"]: item["runs"] for item in data["items"]} == dict(expected)
    for item in data["items"]:
        newest = Run.objects.filter(type=item["type"], started_at__isnull=False).order_by(
            "-started_at", "-id"
        )
        assert (item["last_run"] or {}).get("id") == (newest[0].pk if newest else None)
        page = client.get(item["url"])
        assert page.status_code == 200, item["type"]
        trends = client.get(item["trends_url"]).json()
        counted = Run.objects.filter(type=item["type"], started_at__isnull=False).count()
        assert trends["runs"] <= counted
    html = client.get(reverse("traces:type-list")).content.decode()
    assert html.count("data-row-link") == len(expected)


def test_the_list_over_a_range_counts_the_runs_started_in_it(client):
    nightly_runs()
    write("old", run_type="old-type", started=BASE_TIME - timedelta(days=400))
    day = BASE_TIME + timedelta(days=1)
    data = client.get(
        "/api/types", {"since": day.strftime("%Y-%m-%d"), "until": day.strftime("%Y-%m-%d 23:59")}
    ).json()
    assert [(i["type"], i["runs"], i["counts"]) for i in data["items"]] == [
        (TYPE, PER_DAY, {"succeeded": PER_DAY - 1, "failed": 1})
    ]
    assert data["items"][0]["last_run"]["external_id"] == f"n1-{PER_DAY - 1}"
    assert client.get("/api/types").json()["items"][0]["type"] == TYPE  # sorted by name
    assert client.get("/api/types", {"format": "nope"}).status_code == 400


# --- the run page -------------------------------------------------------------------------


def test_a_run_page_compares_its_duration_with_its_types(client):
    nightly_runs()
    last = BASE_TIME + timedelta(days=DAYS - 1, minutes=30)
    run_id = write("slow", started=last, duration=2 * 2500.0)
    html = client.get(reverse("traces:run-detail", args=[run_id])).content.decode()
    compare_url = reverse("traces:run-type-compare", args=[run_id])
    assert f'hx-get="{compare_url}"' in html and f'href="/types/{TYPE}/"' in html
    fragment = client.get(compare_url).content.decode()
    # The succeeded runs of the 30 days up to it, itself included.
    succeeded = sorted(
        [(i + 1) * 100.0 * (d + 1) for d in range(DAYS) for i in range(1, PER_DAY)] + [5000.0]
    )
    p50 = succeeded[math.ceil(0.5 * len(succeeded)) - 1]
    match = re.search(r"([\d.]+)\u00d7 the p50 of", fragment)
    assert match and float(match.group(1)) == pytest.approx(5000.0 / p50, abs=0.05 + ERROR * 3)
    assert f"/types/{TYPE}/?format=otlp" in fragment and "above its p95" not in fragment
    running = Run.objects.get(external_id="running")
    html = client.get(running.get_absolute_url()).content.decode()
    # No duration yet: its duration so far is compared (tests/test_views_run_header_compare.py).
    assert f'hx-get="{reverse("traces:run-type-compare", args=[running.pk])}"' in html


def test_a_list_of_many_types_reads_their_last_runs_in_one_query(client, django_assert_num_queries):
    RunCount.objects.bulk_create(
        RunCount(format="otlp", run_type=f"type {i:03}", status="succeeded", count=1)
        for i in range(600)
    )
    write("last", run_type="type 599")
    with django_assert_num_queries(3):  # the counts, the newest run ids, those runs
        items = client.get("/api/types").json()["items"]
    assert len(items) == 600
    assert items[-1]["last_run"]["external_id"] == "last" and items[0]["last_run"] is None


@pytest.mark.parametrize(("runs", "labels"), [(1, ["0", "1"]), (3, ["0", "2", "4"])])
def test_the_runs_axis_is_labelled_in_whole_runs(client, runs, labels):
    for i in range(runs):
        write(f"w{i}", started=BASE_TIME + timedelta(minutes=i))
    response = client.get(reverse("traces:type-detail", args=[TYPE]), {"bucket": "hour"})
    chart = next(c for c in response.context["charts"] if c.id == "chart-runs")
    assert [tick["label"] for tick in chart.ticks] == labels
    assert f"the most in one hour: {runs}." in chart.description


@pytest.mark.parametrize("page", ["list", "detail"])
def test_the_types_pages_offer_the_relative_time_presets(client, page):
    nightly_runs()
    url = (
        reverse("traces:type-list")
        if page == "list"
        else reverse("traces:type-detail", args=[TYPE])
    )
    html = client.get(url, {"since": "24h", "status": "failed"}).content.decode()
    current = re.search(r'<a href="([^"]*)" aria-current="true">last 24 h</a>', html)
    assert current, "the chosen preset is marked"
    assert "status=failed" in unescape(current[1])  # the other filters stay
    assert '<datalist id="time-presets">' in html  # the From box's list="time-presets"
