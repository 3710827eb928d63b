"""Steps across runs (/steps/): filters, failures grouped by cause, htmx parts,
keyset pages, query counts that do not grow with rows, hostile content."""

from datetime import timedelta

import pytest
from django.db.models import Sum
from django.urls import reverse

from tests.factories import BASE_TIME, make_runs, make_steps, recount_failure_causes
from traces import queries
from traces.causes import NO_MESSAGE
from traces.ingest.loader import ingest_paths
from traces.models import Format, Run, Step

URL = reverse("traces:step-list")


# --- helpers -------------------------------------------------------------------------------


def failed_steps(run, count, *, error="boom", start=0):
    return make_steps(run, count, status="failed", start=start, error=error)


def names(response):
    return [step.name for step in response.context["page"].items]


# --- the page and its htmx parts -----------------------------------------------------------


@pytest.mark.django_db
def test_full_page_lists_steps_newest_first(client):
    run = make_runs(1)[0]
    make_steps(run, 3)
    response = client.get(URL)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and 'id="step-rows"' in html
    assert names(response) == ["step 2", "step 1", "step 0"]
    assert reverse("traces:step-detail", args=[run.pk, "s.2"]) in html
    assert reverse("traces:run-detail", args=[run.pk]) in html


@pytest.mark.django_db
def test_failed_steps_page_shows_causes_above_the_rows(client):
    run = make_runs(1, status="failed")[0]
    failed_steps(run, 2, error="disk full on /dev/sda1")
    html = client.get(URL, {"status": "failed"}).content.decode()
    assert "Failure causes" in html and "Failed steps" in html
    assert "disk full on /dev/sda1" in html


@pytest.mark.parametrize(
    ("target", "part", "has_groups"),
    [
        (None, "step-page", True),
        ("step-page", "step-page", True),
        ("step-results", "step-results", True),
        ("step-rows", "step-rows", False),
    ],
)
@pytest.mark.django_db
def test_htmx_request_gets_only_the_part_it_targets(client, target, part, has_groups):
    run = make_runs(1, status="failed")[0]
    failed_steps(run, 2)
    headers = {"HX-Request": "true"}
    if target:
        headers["HX-Target"] = target
    response = client.get(URL, {"status": "failed"}, headers=headers)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith(f'<div id="{part}">')
    assert ("Failure causes" in html) is has_groups
    assert "step 1" in html
    assert response["Vary"] == "HX-Request, HX-Target"


@pytest.mark.django_db
def test_history_restore_gets_the_whole_page(client):
    make_steps(make_runs(1)[0], 1)
    headers = {"HX-Request": "true", "HX-History-Restore-Request": "true", "HX-Target": "step-rows"}
    assert "<html" in client.get(URL, headers=headers).content.decode()


# --- the samples ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_failed_steps_count_is_the_sum_over_formats(client, samples):
    ingest_paths([samples])
    total = client.get(URL, {"status": "failed"}).context["count"]
    per_format = {
        fmt: client.get(URL, {"status": "failed", "format": fmt}).context["count"]
        for fmt in Format.values
    }
    assert total == sum(per_format.values())
    assert total == Run.objects.aggregate(n=Sum("steps_failed"))["n"]
    assert all(per_format.values()), per_format  # every format has failures in the samples


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"format": "runs"}, ["upsert_batch", "process_charges", "build_view", "build_view"]),
        ({"run_type": "materialize_view"}, ["build_view", "build_view"]),
        ({"name": "build_view", "name_match": "exact"}, ["build_view", "build_view"]),
        ({"name": "BUILD", "format": "runs"}, ["build_view", "build_view"]),
        ({"name": "build", "name_match": "exact"}, []),
        ({"error": "STATEMENT TIMEOUT"}, ["build_view", "build_view"]),
        ({"error": "unique constraint"}, ["upsert_batch"]),
        (
            {"since": "2026-03-02T07:39:30", "until": "2026-03-02T08:10:30"},
            ["process_charges", "build_view"],
        ),
    ],
)
@pytest.mark.django_db
def test_filters_narrow_the_failed_steps(client, samples, query, expected):
    ingest_paths([samples / "runs"])
    response = client.get(URL, {"status": "failed", **query})
    assert names(response) == expected


@pytest.mark.django_db
def test_run_filter_keeps_one_runs_steps_and_names_the_run(client, samples):
    ingest_paths([samples / "runs"])
    run = Run.objects.filter(name="materialize_view").order_by("pk").first()
    response = client.get(URL, {"run": run.pk})
    assert {step.run_id for step in response.context["page"].items} == {run.pk}
    assert response.context["count"] == run.step_count
    assert "run: <a href" in response.content.decode()


@pytest.mark.django_db
def test_errors_of_workflow_and_runs_samples_group_by_cause(client, samples):
    ingest_paths([samples / "workflow", samples / "runs"])
    groups = client.get(URL, {"status": "failed"}).context["groups"]
    by_text = {group.text: group for group in groups.groups}
    timeout = by_text["canceling statement due to statement timeout"]
    assert timeout.count == 2  # the two build_view failures of the runs sample
    assert groups.groups[0] is timeout  # most frequent first
    assert "insufficient stock for sku <id>: requested <n>, available <n>" in by_text
    assert timeout.first_seen < timeout.last_seen
    assert (
        sum(group.count for group in groups.groups)
        == Run.objects.aggregate(n=Sum("steps_failed"))["n"]
    )
    assert groups.from_read_model


@pytest.mark.django_db
def test_clicking_a_cause_lists_only_its_steps(client, samples):
    ingest_paths([samples / "workflow", samples / "runs"])
    cause = "canceling statement due to statement timeout"
    response = client.get(URL, {"status": "failed", "error_group": cause})
    assert names(response) == ["build_view", "build_view"]
    assert response.context["count"] == 2
    html = response.content.decode()
    assert 'class="selected" aria-current="true"' in html
    assert "Show every cause" in html


@pytest.mark.django_db
def test_cause_links_filter_the_list_and_keep_other_filters(client, samples):
    ingest_paths([samples / "runs"])
    html = client.get(URL, {"status": "failed", "format": "runs"}).content.decode()
    assert (
        "format=runs" in html and "error_group=canceling+statement+due+to+statement+timeout" in html
    )


# --- grouping at scale ---------------------------------------------------------------------


@pytest.mark.django_db
def test_messages_differing_by_ids_make_one_group(client):
    run = make_runs(1, status="failed")[0]
    make_steps(
        run, 300, status="failed",
        error=lambda n: f"insufficient stock for sku SKU-{1000 + n}: requested 3",
    )  # fmt: skip
    groups = client.get(URL, {"status": "failed"}).context["groups"]
    assert [(g.text, g.count) for g in groups.groups] == [
        ("insufficient stock for sku <id>: requested <n>", 300)
    ]
    assert groups.groups[0].example == "insufficient stock for sku SKU-1299: requested 3"


def three_causes(run, start=0):
    """1,500 distinct messages in 3 causes (600, 500, 400 failures): more distinct
    messages than the old grouping read (1,000), which made its counts partial."""

    def message(n):
        cause = ["disk full on volume", "lock wait timeout on table", "no route to host"][
            0 if n < 600 else 1 if n < 1100 else 2
        ]
        return f"{cause} vol-{n}"

    return make_steps(run, 1500, status="failed", start=start, error=message)


EXPECTED_THREE = [
    ("disk full on volume <id>", 600),
    ("lock wait timeout on table <id>", 500),
    ("no route to host <id>", 400),
]


@pytest.mark.parametrize("query", [{}, {"error": "vol-"}])  # the read model, the steps
@pytest.mark.django_db
def test_counts_are_exact_with_more_than_a_thousand_distinct_messages(client, query):
    three_causes(make_runs(1, status="failed")[0])
    response = client.get(URL, {"status": "failed", **query})
    groups = response.context["groups"]
    assert groups.from_read_model is not query
    assert [(g.text, g.count) for g in groups.groups] == EXPECTED_THREE
    assert groups.steps_read == 1500
    chosen = client.get(URL, {"status": "failed", "error_group": "no route to host <id>", **query})
    assert chosen.context["count"] == 400
    assert {s.error_cause for s in chosen.context["page"].items} == {"no route to host <id>"}


@pytest.mark.django_db
def test_failures_without_a_message_form_their_own_group(client):
    run = make_runs(1, status="failed")[0]
    failed_steps(run, 2, error="")
    groups = client.get(URL, {"status": "failed"}).context["groups"]
    assert [(g.text, g.count) for g in groups.groups] == [(NO_MESSAGE, 2)]
    listed = client.get(URL, {"status": "failed", "error_group": NO_MESSAGE})
    assert len(listed.context["page"].items) == 2


@pytest.mark.django_db
def test_sparkline_counts_failures_over_time(client):
    run = make_runs(1, status="failed")[0]
    failed_steps(run, 3, error="flaky")
    Step.objects.filter(position=2).update(started_at=BASE_TIME + timedelta(days=5))
    recount_failure_causes()
    groups = client.get(URL, {"status": "failed"}).context["groups"]
    spark = groups.groups[0].spark
    assert groups.spark_unit == "day"
    assert [bucket["n"] for bucket in spark] == [2, 0, 0, 0, 0, 1]
    assert client.get(URL, {"status": "failed"}).content.decode().count("<rect") == 2


@pytest.mark.parametrize(
    ("spread", "unit"),
    [
        (timedelta(hours=30), "day"),
        (timedelta(days=20), "day"),
        (timedelta(days=200), "week"),
        (timedelta(days=900), "month"),
        (timedelta(days=9000), "year"),
    ],
)
@pytest.mark.django_db
def test_sparkline_buckets_hold_every_failure(client, spread, unit):
    run = make_runs(1, status="failed")[0]
    steps = failed_steps(run, 40, error="flaky")
    for index, step in enumerate(steps):
        step.started_at = BASE_TIME + spread * index / 39
    Step.objects.bulk_update(steps, ["started_at"])
    recount_failure_causes()
    groups = client.get(URL, {"status": "failed"}).context["groups"]
    assert groups.spark_unit == unit
    spark = groups.groups[0].spark
    assert sum(bucket["n"] for bucket in spark) == 40
    assert spark[0]["n"] and spark[-1]["n"]
    assert len(spark) <= queries.errors.SPARK_MAX


# --- pages ---------------------------------------------------------------------------------


def walk(client, query, direction="after"):
    seen, cursor = [], None
    for _ in range(20):
        params = dict(query, **({direction: cursor} if cursor else {}))
        page = client.get(URL, params).context["page"]
        seen.extend(page.items)
        cursor = page.next_cursor if direction == "after" else page.prev_cursor
        if not cursor:
            return seen
    raise AssertionError("too many pages")


@pytest.mark.parametrize("query", [{"status": "failed"}, {}])
@pytest.mark.django_db
def test_pages_walk_every_step_once_newest_first(client, query):
    runs = make_runs(2, status="failed")
    make_steps(runs[0], 60, status="failed")
    make_steps(runs[1], 40, status="succeeded", start=30)
    make_steps(runs[1], 25, status="skipped", start=70)
    Step.objects.filter(pk__in=Step.objects.order_by("id").values("pk")[:5]).update(started_at=None)
    expected = list(Step.objects.filter(**query))
    expected.sort(key=lambda s: (s.started_at is not None, s.started_at or BASE_TIME, s.pk))
    expected.reverse()
    seen = walk(client, query)
    assert [s.pk for s in seen] == [s.pk for s in expected]
    # and back from the last page
    last = client.get(URL, dict(query, after=client.get(URL, query).context["page"].next_cursor))
    back = client.get(URL, dict(query, before=last.context["page"].prev_cursor)).context["page"]
    assert [s.pk for s in back.items] == [s.pk for s in expected[:50]]


@pytest.mark.django_db
def test_counts_above_the_cap_are_shown_with_a_plus(client, monkeypatch):
    monkeypatch.setattr(queries.steps, "COUNT_CAP", 10)
    make_steps(make_runs(1)[0], 12)
    response = client.get(URL)
    assert response.context["count"] == 10 and response.context["count_capped"]
    assert "10+ steps" in response.content.decode()  # no status chosen: just "steps"


# --- query counts --------------------------------------------------------------------------


def populate(runs: int, steps_per_run: int):
    for run in make_runs(runs, status="failed"):
        make_steps(
            run, steps_per_run, status="failed",
            error=lambda n, run=run: f"timeout after {n}ms on shard {run.pk}",
        )  # fmt: skip
        make_steps(run, steps_per_run, start=steps_per_run)


@pytest.mark.parametrize("size", [(1, 3), (8, 40)])
@pytest.mark.django_db
def test_failed_steps_page_query_count_does_not_grow(client, django_assert_num_queries, size):
    populate(*size)
    # groups per day (the read model, else the steps), examples, rows, count, run types
    with django_assert_num_queries(5):
        client.get(URL, {"status": "failed"})
    with django_assert_num_queries(5):
        client.get(URL, {"status": "failed", "error": "timeout"})
    with django_assert_num_queries(2):  # rows, count: a cause is a column's value
        client.get(
            URL,
            {"status": "failed", "error_group": "timeout after <duration> on shard <n>"},
            headers={"HX-Request": "true", "HX-Target": "step-rows"},
        )


@pytest.mark.parametrize("size", [(1, 3), (8, 40)])
@pytest.mark.django_db
def test_all_steps_page_query_count_does_not_grow(client, django_assert_num_queries, size):
    populate(*size)
    # one index walk per status (6), count, run types
    with django_assert_num_queries(8):
        client.get(URL)


# --- bad input and hostile content ---------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"status": "nope"},
        {"format": "xml"},
        {"since": "yesterday"},
        {"since": "2026-03-02", "until": "2026-03-01"},
        {"after": "!!"},
        {"before": "bm90IGpzb24"},
        {"run": "abc"},
        {"run": "-1"},
        {"name_match": "regex"},
        {"group": "run"},
        {"error_group": "x" * 400},
    ],
)
@pytest.mark.django_db
def test_bad_filters_are_a_400_with_a_message(client, query):
    response = client.get(URL, query)
    assert response.status_code == 400
    assert "could not be answered" in response.content.decode()


@pytest.mark.django_db
def test_hostile_names_and_errors_are_shown_as_text(client):
    run = make_runs(1, status="failed", name="<script>alert(1)</script>")[0]
    Run.objects.filter(pk=run.pk).update(type="javascript:alert(1)")
    steps = failed_steps(run, 1, error="<img src=x onerror=alert(1)> \u202etxt.exe")
    Step.objects.filter(pk=steps[0].pk).update(name="javascript:alert(1)", type="<b>x</b>")
    response = client.get(URL, {"status": "failed"})
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>x</b>" not in html
    assert 'href="javascript:' not in html
    assert "javascript:alert(1)" in html  # shown, as text
    assert "\u202etxt.exe" in html  # the override is kept as text, inside an isolating <bdi>
    assert "<bdi>&lt;img src=x onerror=alert(1)&gt; \u202etxt.exe</bdi>" in html


@pytest.mark.django_db
def test_a_run_id_past_64_bits_is_a_400_not_a_crash(client):
    response = client.get("/steps/", {"run": "99999999999999999999"})
    assert response.status_code == 400


@pytest.mark.django_db
def test_a_failure_without_a_start_is_listed_on_its_runs_time_as_the_box_counts_it(client):
    """A failed step without a start of its own (greentic's) counts in the box on its
    run's time: the list ranges and orders it by that time too (Step.failed_at), so a
    cause's count, its rows and the list's count agree under a time range."""
    run = make_runs(1, status="failed")[0]
    steps = failed_steps(run, 6, error="flaky")
    Step.objects.filter(pk=steps[0].pk).update(started_at=None)
    Run.objects.filter(pk=run.pk).update(
        started_at=BASE_TIME + timedelta(seconds=2, milliseconds=500)
    )
    recount_failure_causes()
    day = BASE_TIME.replace(hour=0).strftime("%Y-%m-%d")
    for query in (
        {"status": "failed", "since": day},
        {"status": "failed", "error_group": "flaky", "since": day},
        {"status": "failed", "error_group": "flaky"},
    ):
        response = client.get(URL, query)
        assert response.context["groups"].find("flaky").count == 6
        assert response.context["count"] == len(response.context["page"].items) == 6
        # Newest first by the failure's time: the timeless step between seconds 2 and 3.
        listed = [step.pk for step in response.context["page"].items]
        assert listed == [steps[i].pk for i in (5, 4, 3, 0, 2, 1)]
        assert client.get("/api/steps", query).json()["count"] == 6
    # A range that starts after the run's time leaves it out, as the box does.
    since = (BASE_TIME + timedelta(seconds=3)).isoformat()
    response = client.get(URL, {"status": "failed", "error_group": "flaky", "since": since})
    assert response.context["count"] == len(response.context["page"].items) == 3


@pytest.mark.django_db
def test_a_long_error_folds_and_links_its_whole_text_and_a_timeless_step_says_run_start(client):
    run = make_runs(1)[0]
    long_error = "<boom> " + "x" * 5000
    failed = make_steps(run, 1, status="failed", error=long_error)[0]
    timeless = make_steps(run, 1, status="failed", start=1, error="short")[0]
    Step.objects.filter(pk=timeless.pk).update(started_at=None)
    html = client.get(reverse("traces:step-list"), {"status": "failed"}).content.decode()
    row = html[html.index(f'id="step-{failed.pk}"') :]
    row = row[: row.index("</tr>")]
    assert '<details class="error-more"><summary><bdi>&lt;boom&gt; xxx' in row
    assert "<boom>" not in html
    assert f"whole error ({len(long_error):,} characters) in the step panel" in row
    step_href = reverse("traces:step-detail", args=[run.pk, failed.key])
    assert f'<a href="{step_href}">whole error' in row
    timeless_row = html[html.index(f'id="step-{timeless.pk}"') :]
    assert "· run start</div>" in timeless_row[: timeless_row.index("</tr>")]
