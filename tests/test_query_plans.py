"""Every keyset-paginated list walks an index in its order (`ORDER BY ..., id LIMIT n`
stops after n rows) instead of sorting all the rows it matches: the plan of each
list's query has no sort, on SQLite and on PostgreSQL (where an index that does not
end with the tie-breaker `id`, or sorts NULLs the other way, means a Sort of every
match: the 39,589 roots of a big run's tree before 0012_keyset_indexes).

The planner is told that sorting is dear (PostgreSQL's enable_sort and
enable_incremental_sort off: an index on a prefix of the order, finished by an
Incremental Sort, is what a table without statistics may prefer), so on these
few rows it still picks the index whenever one serves the order: what is checked is
that such an index exists, not the planner's choice for a table this small."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.db.models import F, Q

from tests.factories import make_runs, make_steps, refresh_step_names
from traces import queries
from traces.forms import RunFilterForm
from traces.ingest.loader import ingest_paths
from traces.models import EntityLink, LogEntry, Run, Step, StepGroup, TraceFile
from traces.search.index import index_runs

pytestmark = pytest.mark.django_db

ALL = {"after": None, "before": None}


class Recorder:
    """The SELECTs (and WITH ... SELECTs) run inside it, with their parameters."""

    def __init__(self):
        self.queries: list[tuple[str, tuple]] = []

    def __call__(self, execute, sql, params, many, context):
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            self.queries.append((sql, params))
        return execute(sql, params, many, context)


SORTS = ("sort", "incremental_sort")


def plans_of(read, *, dear: tuple[str, ...] = SORTS) -> list[tuple[str, list[str]]]:
    """Each SELECT that `read()` runs, with the steps of its plan (PostgreSQL told that
    the `dear` plan nodes are: sort, seqscan, bitmapscan)."""
    recorder = Recorder()
    with connection.execute_wrapper(recorder):
        read()
    assert recorder.queries
    return [(sql, plan_steps(sql, params, dear)) for sql, params in recorder.queries]


def plan_steps(sql: str, params, dear: tuple[str, ...] = SORTS) -> list[str]:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for node in dear:
                cursor.execute(f"SET LOCAL enable_{node} = off")
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            return list(_pg_nodes(_json(cursor.fetchone()[0])[0]["Plan"]))
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return [row[-1] for row in cursor.fetchall()]


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _pg_nodes(node: dict):
    yield f"{node['Node Type']} {node.get('Index Name', node.get('Relation Name', ''))}".strip()
    for child in node.get("Plans", []):
        yield from _pg_nodes(child)


def sorts(plan: list[str]) -> list[str]:
    """The steps that sort: PostgreSQL's Sort and Incremental Sort, SQLite's temp b-tree."""
    return [step for step in plan if "Sort" in step or "TEMP B-TREE FOR" in step]


def assert_walks_an_index(read):
    for sql, plan in plans_of(read):
        assert not sorts(plan), f"{sql[sql.index(' FROM ') :]}\n  plan: {plan}"


def _step_names_settled() -> None:
    """After a test renamed steps or moved lines by update(): each line's step_name as
    the ingest would write it, and on PostgreSQL both tables' statistics taken again."""
    refresh_step_names()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE traces_step")
            cursor.execute("ANALYZE traces_logentry")


# --- data ---------------------------------------------------------------------------------


@pytest.fixture
def tree_run():
    """A run of 120 roots, one of them with 30 children, some failed, with log rows."""
    run = make_runs(1)[0]
    roots = make_steps(run, 100) + make_steps(run, 20, status="failed", start=100)
    make_steps(run, 30, parent=roots[5], start=200)
    Step.objects.filter(pk=roots[5].pk).update(child_count=30)
    LogEntry.objects.bulk_create(
        LogEntry(run=run, step=roots[i % 10], seq=i, level="info", message=f"line {i}")
        for i in range(50)
    )
    return run, roots


def _cursor_after(page) -> str:
    assert page.next_cursor
    return page.next_cursor


# --- a run's tree, timeline and log -------------------------------------------------------


def test_tree_roots_window_walks_an_index(tree_run):
    run, _ = tree_run
    assert_walks_an_index(lambda: queries.steps.tree_level(run.pk, None, size=10))


def test_tree_roots_next_window_walks_an_index(tree_run):
    run, _ = tree_run
    after = _cursor_after(queries.steps.tree_level(run.pk, None, size=10))
    assert_walks_an_index(lambda: queries.steps.tree_level(run.pk, None, after=after, size=10))


def test_tree_children_window_walks_an_index(tree_run):
    run, roots = tree_run
    assert_walks_an_index(lambda: queries.steps.tree_level(run.pk, roots[5].pk, size=10))


def test_failed_only_roots_walk_an_index(tree_run):
    run, _ = tree_run
    read = lambda: queries.steps.tree_level(run.pk, None, failed_only=True, size=10)  # noqa: E731
    assert_walks_an_index(read)


@pytest.mark.parametrize("failed_only", [False, True])
def test_timeline_windows_walk_an_index(tree_run, failed_only):
    run, _ = tree_run
    page = queries.timeline.timeline_window(run.pk, failed_only=failed_only, size=5)
    after = _cursor_after(page)
    assert_walks_an_index(
        lambda: queries.timeline.timeline_window(run.pk, failed_only=failed_only, size=5)
    )
    assert_walks_an_index(
        lambda: queries.timeline.timeline_window(
            run.pk, failed_only=failed_only, after=after, size=5
        )
    )
    assert_walks_an_index(
        lambda: queries.timeline.timeline_window(
            run.pk, failed_only=failed_only, before=after, size=5
        )
    )


def test_log_windows_walk_an_index(tree_run):
    run, _ = tree_run
    after = _cursor_after(queries.logs.run_logs(run.pk, size=10))
    assert_walks_an_index(lambda: queries.logs.run_logs(run.pk, size=10))
    assert_walks_an_index(lambda: queries.logs.run_logs(run.pk, after=after, size=10))
    assert_walks_an_index(lambda: queries.logs.run_logs(run.pk, before=after, size=10))


# --- lists across runs --------------------------------------------------------------------


@pytest.mark.parametrize("sort", list(RunFilterForm.SORTS))
def test_runs_list_walks_an_index_in_every_sort(sort):
    make_runs(60)
    form = RunFilterForm({"sort": sort})
    assert form.is_valid()
    runs = queries.runs.filter_runs(form.cleaned_data)
    assert_walks_an_index(lambda: queries.runs.runs_page(runs, ALL, form.sort_key()))


@pytest.mark.parametrize(
    "filters",
    [{"status": "failed"}, {"format": "runs"}, {"type": "nightly"}, {"in_source": "no"}],
)
def test_filtered_runs_list_walks_an_index(filters):
    make_runs(60)
    make_runs(10, status="failed")
    form = RunFilterForm(filters)
    assert form.is_valid()
    runs = queries.runs.filter_runs(form.cleaned_data)
    assert_walks_an_index(lambda: queries.runs.runs_page(runs, ALL, form.sort_key()))


@pytest.mark.parametrize("status", ["failed", ""])
def test_steps_list_walks_an_index(tree_run, status):
    filters = {"status": status, **ALL}
    steps = queries.steps.filter_steps(filters)
    assert_walks_an_index(lambda: queries.steps.steps_page(steps, filters))


@pytest.mark.parametrize("cause", [False, True])
def test_failed_steps_in_a_range_walk_an_index(tree_run, cause):
    """The failed steps (or a cause's) since a time: a range of their failure's time
    (failed_at) read newest first from an index, pages after a cursor too."""
    from traces.pagination import encode_cursor  # (an import line other branches change)

    run, _ = tree_run
    Step.objects.filter(run=run, status="failed", seq__lte=105).update(started_at=None)
    since = Step.objects.filter(status="failed").order_by("failed_at").first().failed_at
    filters = {"status": "failed", "since": since + timedelta(seconds=3), **ALL}
    if cause:
        Step.objects.filter(status="failed").update(error_cause="boom")
        filters["error_group"] = "boom"
    steps = queries.steps.filter_steps(filters)
    page = queries.steps.steps_page(steps, filters)
    assert len(page.items) == 17
    # A cause alone (only failed steps have one, d1f434d): the partial failed_at index
    # needs `status = 'failed'`, so SQLite walks the cause's index, not every failure.
    assert ('"status" =' in str(steps.query)) != cause
    assert_walks_an_index(lambda: queries.steps.steps_page(steps, filters))
    middle = page.items[8]
    after = {**filters, "after": encode_cursor(middle.failed_at, middle.pk)}
    assert_walks_an_index(lambda: queries.steps.steps_page(steps, after))


def test_steps_list_count_reads_an_index_alone(tree_run):
    """The "10,000+" count of the failed steps: 10,001 entries of the status index,
    never a lookup of each row in the table for its `synthetic` flag."""
    if connection.vendor == "postgresql":
        # With no statistics, a 120-row table lets the planner pick any index that
        # holds `status` (the zoom's run-led one too): plan as a real store is planned.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE traces_step")
    steps = queries.steps.filter_steps({"status": "failed"})
    [(sql, plan)] = plans_of(
        lambda: queries.steps.capped_count(steps), dear=(*SORTS, "seqscan", "bitmapscan")
    )
    # One index on both databases since 0027_index_twins (PostgreSQL's NULLS LAST twin gone);
    # PostgreSQL may read the partial index of the failed steps instead (0031), the same
    # entries, as small: its entries alone too.
    # Or the failed steps' own index by their failure's time (0032).
    alone = {
        "SEARCH traces_step USING COVERING INDEX step_failed_at (status=?)",
        "SEARCH traces_step USING COVERING INDEX step_status_started (status=?)",
        "Index Only Scan step_failed_at",
        "Index Only Scan step_status_started",
        "Index Only Scan step_run_failed_started",
    }
    assert alone & set(plan), f"{sql}\n  plan: {plan}"


@pytest.mark.parametrize("status", ["error", ""])
def test_files_list_walks_an_index(status):
    TraceFile.objects.bulk_create(
        TraceFile(path=f"/t/{i}.json", display_name=f"{i}.json", status="ok") for i in range(40)
    )
    assert_walks_an_index(lambda: queries.files.files_page({"status": status, **ALL}))


@pytest.mark.parametrize("failed_only", [False, True])
def test_zoomed_timeline_windows_walk_an_index(tree_run, failed_only):
    """The steps overlapping a time window (queries.timeline.overlapping), its next page
    and the minimap: index ranges in their order, whatever the run's size."""
    run, _ = tree_run
    run.refresh_from_db()
    Step.objects.filter(run=run).update(finished_at=None)
    span = 300_000.0
    window = {"failed_only": failed_only, "size": 5}
    page = queries.timeline.overlapping(run, 95_000, 130_000, span, **window).page
    after = _cursor_after(page)
    for read in (
        lambda: queries.timeline.overlapping(run, 95_000, 130_000, span, **window),
        lambda: queries.timeline.overlapping(run, 95_000, 130_000, span, after=after, **window),
        lambda: queries.timeline.minimap(run, span),
    ):
        for sql, plan in plans_of(read):
            assert not sorts(plan), f"{sql[sql.index(' FROM ') :]}\n  plan: {plan}"


def test_minimap_failed_ticks_read_the_failed_steps_index_alone(tree_run):
    """The minimap's failed steps come from the partial index of a run's failed steps
    (0030: not an index of every step), its entries alone, in their order."""
    run, _ = tree_run
    run.refresh_from_db()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE traces_step")
    plans = [
        (sql, plan)
        for sql, plan in plans_of(
            lambda: queries.timeline.minimap(run, 300_000.0),
            dear=(*SORTS, "seqscan", "bitmapscan"),
        )
        if "status" in sql
    ]
    assert len(plans) == 1
    [(sql, plan)] = plans
    alone = (
        "USING COVERING INDEX step_run_failed_started ",
        "Index Only Scan step_run_failed_started",
    )
    assert any(line.startswith(alone) or alone[0] in line for line in plan), (
        f"{sql}\n  plan: {plan}"
    )


# --- the other newest-first reads of the NULLS LAST indexes (0027_index_twins) ------------
# One index per order on both databases: a KeysetIndex is `DESC NULLS LAST` on
# PostgreSQL, so every read of it says NULLS LAST (SQLite's DESC already is).


def plans_from(read, table: str, dear: tuple[str, ...] = SORTS) -> list[tuple[str, list[str]]]:
    """The plans of `read()`'s SELECTs that read `table`."""
    return [
        (sql, plan)
        for sql, plan in plans_of(read, dear=dear)
        if f'FROM "{table}"' in sql or f"FROM {table}" in sql
    ]


def assert_reads_walk_an_index(read, table: str) -> None:
    plans = plans_from(read, table)
    assert plans, f"no query of {table}"
    for sql, plan in plans:
        assert not sorts(plan), f"{sql[sql.index(' FROM ') :]}\n  plan: {plan}"


@pytest.fixture
def entity_run():
    """A run whose steps have a subject entity and links to it, some without a time."""
    run = make_runs(1)[0]
    steps = make_steps(run, 60)  # more than a page
    Step.objects.filter(run=run).update(
        entity_type="order", entity_id="o-1", entity_seen_at=F("started_at")
    )
    Step.objects.filter(pk__in=[step.pk for step in steps[:3]]).update(entity_seen_at=None)
    EntityLink.objects.bulk_create(
        EntityLink(
            step=step, run=run, link_type="input", entity_type="order", entity_id="o-1",
            external_id=f"x-{i % 4}", seen_at=step.started_at if i > 2 else None,
        )
        for i, step in enumerate(steps)
    )  # fmt: skip
    return run, steps


def test_entity_links_and_subjects_walk_an_index(entity_run):
    after = _cursor_after(queries.entities.links_page("order", "o-1", {}))
    for filters in ({}, {"after": after}, {"before": after}):
        assert_walks_an_index(lambda: queries.entities.links_page("order", "o-1", filters))  # noqa: B023
    assert_walks_an_index(lambda: queries.entities.subjects_page("order", "o-1", {}))


def index_sql(name: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_get_indexdef(%s::regclass)", [name])
        else:
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = %s", [name])
        return cursor.fetchone()[0]


def test_the_subject_index_holds_only_the_steps_with_a_subject_and_serves_the_list(entity_run):
    """step_entity_seen is partial (most steps have no subject entity, and each entry
    cost PostgreSQL's COPY ~3 µs a step); the subject list says its condition, so both
    databases read it, newest first."""
    assert "WHERE" in index_sql("step_entity_seen").upper()
    assert "entity_type" in index_sql("step_entity_seen").upper().split("WHERE")[1].lower()
    plans = plans_from(lambda: queries.entities.subjects_page("order", "o-1", {}), "traces_step")
    assert plans and all(any("step_entity_seen" in node for node in plan) for _, plan in plans)
    assert len(queries.entities.subjects_page("order", "o-1", {}).items) > 0


def test_entity_recent_external_ids_walk_an_index(entity_run):
    read = lambda: queries.entities._recent_external_ids("order", "o-1")  # noqa: E731
    assert read() == ["x-0", "x-1", "x-2", "x-3"]
    assert_walks_an_index(read)


def test_cause_steps_list_walks_an_index():
    run = make_runs(1)[0]
    make_steps(run, 40, status="failed", error="boom: timeout after 5s")
    cause = Step.objects.values_list("error_cause", flat=True).first()
    filters = {"status": "failed", "error_group": cause, **ALL}
    steps = queries.steps.filter_steps(filters)
    assert_walks_an_index(lambda: queries.steps.steps_page(steps, filters))


def test_cause_steps_list_asks_for_the_cause_alone(samples):
    """Only failed steps have a cause, so a cause's list (its rows, its count under a
    time range, the API's) does not also ask for `status = 'failed'`: PostgreSQL took
    the two for independent, expected a few dozen of the cause's thousands of steps
    and read them all through both indexes (BitmapAnd) to sort them: 355 ms at 10 M
    steps (bench/RESULTS.md §15d). The rows are the same."""
    ingest_paths([samples / "workflow", samples / "runs"])
    assert not Step.objects.exclude(error_cause="").exclude(status="failed").exists()
    causes = set(Step.objects.exclude(error_cause="").values_list("error_cause", flat=True))
    assert len(causes) > 1
    for cause, since in itertools.product(causes, (None, datetime(2000, 1, 1, tzinfo=UTC))):
        filters = {"status": "failed", "error_group": cause, "since": since, **ALL}
        steps = queries.steps.filter_steps(filters)
        recorder = Recorder()
        with connection.execute_wrapper(recorder):
            page = queries.steps.steps_page(steps, filters)
            counted = queries.steps.capped_count(steps)
        expected = Step.objects.filter(status="failed", synthetic=False, error_cause=cause)
        if since:
            expected = expected.filter(started_at__gte=since)
        newest = expected.order_by(F("started_at").desc(nulls_last=True), "-id")
        assert [step.pk for step in page.items] == list(newest.values_list("pk", flat=True)[:50])
        assert counted == (expected.count(), False)
        assert [sql for sql, _ in recorder.queries if '"status" =' in sql] == []
    # Another status with a cause still lists nothing.
    filters = {"status": "succeeded", "error_group": cause, **ALL}
    assert not queries.steps.steps_page(queries.steps.filter_steps(filters), filters).items


def test_cause_examples_walk_an_index():
    run = make_runs(1)[0]
    make_steps(run, 20, status="failed", error=lambda i: f"boom {i % 2}: timeout")
    Step.objects.filter(seq__lte=2).update(started_at=None)
    causes = sorted(set(Step.objects.values_list("error_cause", flat=True)))
    groups = [SimpleNamespace(text=cause, example=None) for cause in causes]
    assert_walks_an_index(lambda: queries.errors.add_examples(groups))
    # The newest timed failure of each cause, on both databases (not an untimed one).
    newest = {
        cause: Step.objects.filter(error_cause=cause, started_at__isnull=False)
        .order_by("-started_at").values_list("error", flat=True).first()
        for cause in causes
    }  # fmt: skip
    assert {group.text: group.example for group in groups} == newest


def test_failing_now_steps_walk_an_index():
    run = make_runs(1, status="failed")[0]
    make_steps(run, 30, status="failed", error="boom")
    now = Step.objects.order_by("-started_at").first().started_at + timedelta(minutes=30)
    assert_reads_walk_an_index(lambda: queries.failing.failing_now(now), "traces_step")


def test_the_failed_at_repair_walks_the_failed_steps_index_for_what_they_miss():
    """manage.py fill_failed_at: the failed steps missing their time or whether it is
    estimated, a batch at a time, walked in their own index's order (it holds both: not
    every step's row, nor every failed one's, nor a sort); then the batch's rows by an
    index."""
    from traces.ingest.failure_counts import fill_missing_failed_at

    run = make_runs(1, status="failed")[0]
    make_steps(run, 30, status="failed", error="boom")
    make_steps(run, 60, start=30)
    Step.objects.filter(status="failed", seq__gt=5).update(failed_at=None)
    Step.objects.filter(status="failed", seq__lte=20).update(failed_at_estimated=None)
    batches = fill_missing_failed_at(10)
    next(batches)
    # (PostgreSQL told sorts and sequential scans are dear: on a table this small any
    # plan is as cheap as another.)
    plans = plans_from(lambda: next(batches), "traces_step", dear=(*SORTS, "seqscan"))
    (find, plan), (by_id, rows_plan) = plans
    assert not sorts(plan), f"{find}\n  plan: {plan}"
    assert any("step_failed_at" in step for step in plan), f"{find}\n  plan: {plan}"
    text = " ".join(rows_plan)
    assert "SCAN traces_step" not in text and "Seq Scan" not in text, f"{by_id}\n  {rows_plan}"
    # Every failed step filled after the batches, in as many as they took.
    assert sum(1 for _ in batches) == 1
    assert not Step.objects.filter(status="failed", failed_at_estimated=None).exists()
    assert not Step.objects.filter(status="failed", failed_at=None).exists()


def test_previous_run_and_types_last_runs_walk_an_index():
    runs = make_runs(30)
    assert queries.compare.previous_run(runs[-1]) == runs[-2]
    assert_walks_an_index(lambda: queries.compare.previous_run(runs[-1]))
    row = queries.types.TypeRow("nightly", ["runs"], Counter())
    recorded = plans_of(lambda: queries.types._add_last_runs([row], "runs", None, None))
    assert row.last_run == runs[-1]
    [(sql, plan)] = [(sql, plan) for sql, plan in recorded if "WITH t(run_type)" in sql]
    assert not sorts(plan), f"{sql}\n  plan: {plan}"


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's merged summary")
def test_two_big_runs_summary_merges_both_runs_index_walks(monkeypatch):
    """Two big runs' summary on PostgreSQL: both runs' steps walked in path order on
    the (run, path) index and merged, neither sorted (nor hashed: told that hashing
    is dear, the merge needs no sort), and no step looked up in the other run."""
    runs = make_runs(2)
    for run, count in zip(runs, (40, 50), strict=True):
        make_steps(run, count)
        Step.objects.filter(run=run).update(path=F("name"))
        Run.objects.filter(pk=run.pk).update(step_count=count)
        run.step_count = count
    monkeypatch.setattr("traces.queries.compare.SUMMARY_INLINE", 10)
    read = lambda: queries.compare.compare_summary(*runs, queries.compare.Threshold())  # noqa: E731
    assert read()["matched"] == 40
    [(sql, plan)] = plans_of(read, dear=(*SORTS, "hashjoin"))
    assert "Merge Join" in plan and not sorts(plan), f"{sql}\n  plan: {plan}"
    assert not [step for step in plan if step.startswith("Nested Loop")], plan


# --- the search and find on PostgreSQL: the stored vector, and a common word's walk --------

on_postgres = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="PostgreSQL's stored search vector"
)


def _analyzed(
    read, off: tuple[str, ...] = ("seqscan",), settings: tuple[str, ...] = ()
) -> list[tuple[str, dict]]:
    """Each SELECT that `read()` runs, with its EXPLAIN ANALYZE plan (JSON). A seq scan
    is made dear, as a big table makes it (on a few thousand rows PostgreSQL reads
    them all rather than an index); `off`: the plan nodes made dear; `settings`: more
    planner settings (`name = value`)."""
    recorder = Recorder()
    with connection.execute_wrapper(recorder):
        read()
    plans = []
    with transaction.atomic(), connection.cursor() as cursor:
        for node in off:
            cursor.execute(f"SET LOCAL enable_{node} = off")
        for setting in settings:
            cursor.execute(f"SET LOCAL {setting}")
        for sql, params in recorder.queries:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
            plans.append((sql, _json(cursor.fetchone()[0])[0]["Plan"]))
    return plans


def _all_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _all_nodes(child)


def _steps_read(plan: dict) -> int:
    """Rows of traces_step the plan read: kept and filtered out, by every scan of it."""
    return sum(
        node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
        + node.get("Rows Removed by Filter", 0)
        + node.get("Rows Removed by Index Recheck", 0)
        for node in _all_nodes(plan)
        if node.get("Relation Name") == "traces_step"
    )


@pytest.fixture
def worded_run():
    """A run of 6,000 steps, 3,000 of them (every other) named `fetch_charges`, 5
    `rare_word`; ANALYZEd, as a big database's statistics would be. On PostgreSQL its
    steps' ids begin a bucket of 65,536 (search/newest.py reads a word a bucket at a
    time): the sequence is not rolled back between tests, so ids that fell across a
    bucket's end (one full run in ten) read one bucket more than the plans counted."""
    run = make_runs(1)[0]
    if connection.vendor == "postgresql":
        _start_step_ids_at_a_bucket()
    steps = make_steps(run, 6_000)
    common = [step.pk for step in steps[::2]]
    Step.objects.filter(pk__in=common).update(name="fetch_charges")
    Step.objects.filter(pk__in=[step.pk for step in steps[1:10:2]]).update(name="rare_word")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE traces_step")
    return run


def _start_step_ids_at_a_bucket() -> None:
    from traces.search.index import COARSE_BITS

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('traces_step', 'id'), "
            "((greatest(nextval(pg_get_serial_sequence('traces_step', 'id')), "
            "(SELECT coalesce(max(id), 0) FROM traces_step)) >> %s) + 1) << %s, false)",
            [COARSE_BITS, COARSE_BITS],
        )


@on_postgres
def test_search_matches_the_stored_vector_through_its_gin_index(worded_run):
    from traces.search.query import search

    plans = _analyzed(lambda: search("rare_word"))
    steps = [plan for sql, plan in plans if "traces_step" in sql and "search_doc @@" in sql]
    text = json.dumps(steps)
    assert steps and "step_search_bucketed" in text and "search_doc @@" in text
    # The step's text is never tokenised again at query time.
    assert "to_tsvector" not in text


@on_postgres
def test_the_walk_reads_each_bucket_s_entries_of_the_word(worded_run):
    """Each bucket the walk counts is one look-up of the words' entries there (an
    absent entry where the bucket has none), not the bucket's postings ANDed with the
    word's."""
    from traces.search.index import BUCKETED_QUERY, STEPS
    from traces.search.newest import newest_matches

    def read():
        with connection.cursor() as cursor:
            newest_matches(cursor, STEPS, ["rare_word"], 20, 1000)

    plans = _analyzed(read, off=("seqscan", "indexscan"))
    [walk] = [plan for sql, plan in plans if sql.startswith("WITH RECURSIVE walk")]
    probes = [node for node in _all_nodes(walk) if node["Node Type"] == "Bitmap Index Scan"]
    assert probes and all(node["Index Name"] == "step_search_bucketed" for node in probes)
    assert all(f"{BUCKETED_QUERY}((walk_1.bucket - 1)" in node["Index Cond"] for node in probes)


@on_postgres
def test_reads_of_the_bucketed_words_are_never_parallel(worded_run):
    """Workers made free and every table worth them, the search and a find still read
    the bucketed words in one process: they are parallel-restricted
    (index.pg_bucketed_functions), because a query of buckets known only at run time
    is guessed at ~50,000 rows and two workers' start cost ~10 ms of a 1 ms read.
    Beside it the control: the same statements with the two functions marked PARALLEL
    SAFE (in a savepoint, rolled back) read the bucketed words in workers, so the test
    sees workers whatever the plans' other scans are (which of those went to workers
    depended on the statistics earlier tests left: the check failed in some orders)."""
    from traces.queries import find as found
    from traces.search.index import BUCKETED
    from traces.search.query import search

    find = found.parse("rare_word")

    def read():
        search("rare_word")
        found.window(worded_run.pk, find, counted=found.count(worded_run.pk, find))

    free = ("parallel_setup_cost = 0", "parallel_tuple_cost = 0",
            "min_parallel_table_scan_size = 0", "min_parallel_index_scan_size = 0")  # fmt: skip

    def bucketed_in_workers() -> list[str]:
        """The conditions naming the bucketed words of the scans that workers run."""
        plans = _analyzed(read, off=("seqscan", "indexscan"), settings=free)
        keyed = [plan for sql, plan in plans if "tracer_bucketed_words" in sql]
        assert len(keyed) >= 4
        in_workers = [node for plan in keyed for node in _in_workers(plan)]
        conditions = [node.get(name, "") for node in in_workers
                      for name in ("Index Cond", "Recheck Cond", "Filter")]  # fmt: skip
        return [condition for condition in conditions if "tracer_bucketed" in condition]

    with transaction.atomic():
        with connection.cursor() as cursor:
            for function in (BUCKETED, f"{BUCKETED}_cut"):
                cursor.execute(f"ALTER FUNCTION {function}(bigint, tsvector) PARALLEL SAFE")
        assert bucketed_in_workers()  # workers are worth it here: the test would see them
        transaction.set_rollback(True)
    # No scan of the bucketed words in a worker (other scans of the same statements may be).
    assert not bucketed_in_workers()


def _in_workers(node: dict, gathered: bool = False):
    """The nodes of a plan that workers run: below a Gather, but not its init plans
    (the leader's)."""
    if gathered:
        yield node
    for child in node.get("Plans", []):
        if child.get("Parent Relationship") != "InitPlan":
            yield from _in_workers(child, gathered or node["Node Type"].startswith("Gather"))
        else:
            yield from _in_workers(child, False)


@on_postgres
def test_search_for_a_common_word_reads_its_newest_matches_not_all(worded_run):
    from traces.search import exact
    from traces.search.index import FINE_BITS
    from traces.search.query import COUNT_CAP, SHOWN, search

    found = None

    def read():
        nonlocal found
        found = search("fetch_charges")

    # As search.newest plans them: bitmap scans alone.
    plans = _analyzed(read, off=("seqscan", "indexscan"))
    assert found.steps.count == COUNT_CAP and found.steps.capped
    assert len(found.steps.items) == SHOWN
    steps = [plan for sql, plan in plans if "search_doc" in sql and "traces_step" in sql]
    step_reads = [_steps_read(plan) for plan in steps]
    # The walk's capped count, then the newest KEY_PROBE a fine bucket of ids at a time:
    # the newest SHOWN listed and the steps the exact-id lookup probes for the word as a
    # key (search.exact), read once for both.
    assert len(step_reads) == 2, step_reads
    # Of its 3,000 matches (in 6,000 steps): the count's first COUNT_CAP + 1, then the
    # matches of the fine buckets (1,024 ids) holding the newest KEY_PROBE (here every
    # other id).
    fine = 1 << FINE_BITS
    assert step_reads[0] <= COUNT_CAP + 1, step_reads
    assert step_reads[1] <= exact.KEY_PROBE + fine, step_reads


@on_postgres
def test_find_of_a_common_word_reads_a_window_not_all_matches(worded_run):
    from traces.queries import find as found

    find = found.parse("fetch_charges")
    counted = found.count(worded_run.pk, find)
    assert counted == (3_000, False) and not found.few_matches(worded_run.pk, find)
    plans = _analyzed(lambda: found.window(worded_run.pk, find, counted=counted))
    plan = next(plan for sql, plan in plans if "search_doc" in sql)
    assert "to_tsvector" not in json.dumps(plan)
    # A window of 50 matches, every other step: ~100 steps read, not 3,000 matches.
    assert _steps_read(plan) <= 4 * found.FIND_WINDOW, _steps_read(plan)


@pytest.fixture
def worded_lines():
    """6,000 log lines of one run, 64 ids apart (6 buckets of 65,536 ids), every other
    one (3,000) `fetch_charges` at level info, the others at level error; ANALYZEd,
    and the GIN index's pending list (fastupdate: rows written since its last
    cleanup, here by earlier tests too) merged, as autovacuum keeps it: the planner
    prices a long pending list, which every scan of the index reads whole, and then
    may prefer the level's B-tree (log_level), filtering all of that level's lines in
    every bucket."""
    run = make_runs(1)[0]
    LogEntry.objects.bulk_create(
        LogEntry(
            id=1 + index * 64,
            run=run,
            seq=index,
            time=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=index),
            level="error" if index % 2 else "info",
            message="something else" if index % 2 else "fetch_charges done",
        )
        for index in range(6_000)
    )
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            index_runs(cursor, [run.pk])  # SQLite's FTS5 index
            return run
        cursor.execute("ANALYZE traces_logentry")
        cursor.execute("SELECT gin_clean_pending_list('log_search_bucket')")
    return run


def _log_reads(plan: dict) -> tuple[int, int]:
    """(ids the plan's bitmap index scans of the log lines' indexes gave, log lines
    it read from the table: kept and filtered out), over every loop."""
    nodes = list(_all_nodes(plan))
    given = sum(
        node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
        for node in nodes
        if node["Node Type"] == "Bitmap Index Scan" and node["Index Name"].startswith("log_")
    )
    read = sum(
        node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
        + node.get("Rows Removed by Filter", 0)
        + node.get("Rows Removed by Index Recheck", 0)
        for node in nodes
        if node.get("Relation Name") == "traces_logentry"
    )
    return given, read


@on_postgres
def test_log_search_for_a_common_word_reads_its_newest_lines_not_all(worded_lines):
    """Through the GIN index of (id bucket, level, the message's words), a bucket at a
    time, newest first (search/newest.py): never the word's 3,000 lines, nor a sort of
    them all (the expression index alone gives all of them to every read)."""
    from traces.search.logs import PAGE, search_logs
    from traces.search.query import COUNT_CAP

    found = None

    def read():
        nonlocal found
        found = search_logs("fetch_charges", {})

    plans = _analyzed(read, off=("seqscan", "indexscan"))  # as newest.py plans them
    assert (found.count, found.capped, len(found.items)) == (COUNT_CAP, True, PAGE)
    worded = [plan for sql, plan in plans if "to_tsvector" in sql]
    text = json.dumps(worded)
    assert "log_search_bucket" in text and "(id >> 16)" in text
    reads = [_log_reads(plan) for plan in worded]
    # The walk: the newest buckets' 512 matches each, to past the cap; the page: the
    # newest bucket's.
    assert len(reads) == 2 and all(given <= COUNT_CAP + 1024 for given, _ in reads), reads
    assert reads[1][0] < 1024, reads
    sorted_rows = [
        node["Plans"][0]["Actual Rows"]
        for plan in worded
        for node in _all_nodes(plan)
        if node["Node Type"] == "Sort"
    ]
    assert all(rows < 1024 for rows in sorted_rows), sorted_rows


@on_postgres
def test_log_search_filters_a_common_word_inside_the_index_or_reads_the_few_lines(
    worded_lines,
):
    """A level is ANDed inside the GIN index: `fetch_charges` at level error (no such
    line) gives no id, not its 3,000 lines to test. A time range that keeps few lines
    reads those and tests the words on them, not the word's lines."""
    from traces.search.logs import search_logs

    found = None

    def read(filters):
        def run():
            nonlocal found
            found = search_logs("fetch_charges", filters)

        return run

    plans = _analyzed(read({"level": "error"}), off=("seqscan", "indexscan"))
    assert (found.count, found.items) == (0, [])
    reads = [_log_reads(plan) for sql, plan in plans if "to_tsvector" in sql]
    assert reads and all(read == (0, 0) for read in reads), reads
    until = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=99)
    plans = _analyzed(read({"until": until}))
    assert found.count == 50 and not found.capped
    reads = [_log_reads(plan) for sql, plan in plans if "to_tsvector" in sql]
    assert len(reads) == 1 and reads[0][1] <= 100, reads


@on_postgres
def test_log_search_tests_a_phrase_on_the_lines_a_step_name_keeps(worded_lines):
    """`fetch_charges` is a phrase of two words: the index gives its lines by the
    words and the step's name (a key of the index, migration 0043), then the phrase
    is tested on each line it gives (none here: its 3,000 lines are of steps named
    `send`): none of the word's lines is read, nor its phrase tested (~5 µs each, its
    vector computed again)."""
    from traces.search.logs import search_logs

    steps = make_steps(worded_lines, 40)
    for name, kept in (("send", steps[::2]), ("fetch", steps[1::2])):
        Step.objects.filter(pk__in=[step.pk for step in kept]).update(name=name)
        level = "info" if name == "send" else "error"
        ids = list(LogEntry.objects.filter(level=level).order_by("pk").values_list("pk", flat=True))
        for offset, step in enumerate(kept):
            LogEntry.objects.filter(pk__in=ids[offset :: len(kept)]).update(step=step)
    _step_names_settled()
    found = None

    def read():
        nonlocal found
        found = search_logs("fetch_charges", {"step": "fetch"})

    plans = _analyzed(read, off=("seqscan", "indexscan"))
    assert (found.count, found.items) == (0, [])
    worded = [plan for sql, plan in plans if "to_tsvector" in sql]
    tested = [
        node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
        + node.get("Rows Removed by Filter", 0)
        for plan in worded
        for node in _all_nodes(plan)
        if "ts_match_vq" in node.get("Filter", "")
    ]
    assert worded and sum(tested) == 0, tested
    # Before the name was a key, the walk read the 3,000 lines and joined their step.
    assert [_log_reads(plan)[1] for plan in worded] == [0] * len(worded)
    assert sum(_steps_read(plan) for plan in worded) == 0


@on_postgres
def test_log_search_in_a_wide_time_range_reads_its_id_bounds_from_a_few_probes(
    worded_lines, monkeypatch
):
    """A time range of more lines than SPARSE (3,000 of the 6,000, ids 96,001 to
    288,001: coarse buckets 1 to 4): the ids its lines lie between are read from each
    bucket's first and last time (log_bucket_time, log_fine_time), not from the range's
    lines; the walk reads the word in the buckets between only."""
    from traces.search import logs
    from traces.search.logs import search_logs

    monkeypatch.setattr(logs, "SPARSE", 100)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    since, until = start + timedelta(seconds=1_500), start + timedelta(seconds=4_499)
    found = None

    def read():
        nonlocal found
        found = search_logs("fetch_charges", {"since": since, "until": until})

    plans = _analyzed(read, off=("seqscan", "indexscan"))
    wanted = list(
        LogEntry.objects.filter(time__gte=since, time__lte=until, level="info")
        .order_by("-pk")
        .values_list("pk", flat=True)
    )
    assert [line.pk for line in found.items] == wanted[:50] and found.capped
    [bounds] = [plan for sql, plan in plans if "WITH RECURSIVE bucket" in sql]
    read_from_indexes = sum(
        node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
        for node in _all_nodes(bounds)
        if node["Node Type"].startswith("Index") and node.get("Relation Name") == "traces_logentry"
    )
    # SPARSE + 1 counted, a probe a bucket (6 coarse, 64 fine at each end), the end
    # fine buckets' lines (16 each): not the range's 3,000.
    assert read_from_indexes <= 101 + 2 * (6 + 64 + 16) + 4, read_from_indexes
    walked = [plan for sql, plan in plans if "WITH RECURSIVE walk" in sql]
    _, read_lines = _log_reads(walked[0])
    # Buckets 4 (202 of its lines in the range), 3 and 2: past the cap, not bucket 5.
    assert 1_001 <= read_lines <= 3 * 512, read_lines


def test_log_search_in_a_time_range_reads_fts5_between_its_id_bounds(worded_lines):
    """SQLite: the word's matches are read from FTS5 between the ids the range's lines
    lie between (its rowid bounded both ways), not newest first from the newest."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's FTS5")
    from traces.search.logs import search_logs

    start = datetime(2026, 11, 1, tzinfo=UTC)
    filters = {"since": start + timedelta(seconds=1_500), "until": start + timedelta(seconds=2_000)}
    read = lambda: search_logs("fetch_charges", filters)  # noqa: E731
    assert read().count == 251
    [plan] = [plan for sql, plan in plans_of(read) if "MATCH" in sql]
    [scan] = [step for step in plan if "VIRTUAL TABLE" in step]
    assert ">" in scan.split(":")[-1] and "<" in scan.split(":")[-1], scan


@on_postgres
def test_planner_settings_are_put_back_as_they_were_inside_an_outer_transaction():
    from traces.search.index import planner_settings

    def shown(cursor, name: str) -> str:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        jit = shown(cursor, "jit")
        with planner_settings(cursor, enable_seqscan=True, enable_indexscan=False, jit=False):
            assert [shown(cursor, name) for name in ("enable_seqscan", "enable_indexscan", "jit")
                    ] == ["on", "off", "off"]  # fmt: skip
        # The outer transaction's own setting, not the default; the others as before.
        assert shown(cursor, "enable_seqscan") == "off"
        assert shown(cursor, "enable_indexscan") == "on" and shown(cursor, "jit") == jit
        assert connection.in_atomic_block and not connection.needs_rollback


def test_a_tree_windows_groups_read_their_index_ranges(samples):
    """The groups of a tree window's levels (the roots' and some parents'): each kind
    of parent its own range of the (run, parent) index, as a plain index scan. Joined
    by OR, PostgreSQL read the whole table when it expected many groups (§15d)."""
    ingest_paths([samples / "workflow", samples / "runs"])
    group = StepGroup.objects.exclude(parent=None).order_by("id").first()
    run_id = group.run_id
    levels = {
        None: list(Step.objects.filter(run_id=run_id, parent=None)),
        group.parent_id: list(Step.objects.filter(parent_id=group.parent_id)),
    }
    read = lambda: queries.groups.groups_of_levels(run_id, levels)  # noqa: E731
    recorder = Recorder()
    with connection.execute_wrapper(recorder):
        _, siblings, _ = read()
    [(sql, params)] = recorder.queries
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        read_parents = sorted((row[0] for row in cursor.fetchall()), key=lambda x: x or 0)
    rows = [step for level in levels.values() for step in level]
    wanted = {group.parent_id} | {
        step.pk for step in rows if step.child_count >= queries.groups.MIN_ITERATIONS
    }
    stored = StepGroup.objects.filter(Q(parent=None) | Q(parent_id__in=wanted), run_id=run_id)
    assert read_parents == sorted(stored.values_list("parent_id", flat=True), key=lambda x: x or 0)
    assert siblings[group.parent_id]
    [(_, plan)] = plans_of(read, dear=(*SORTS, "seqscan", "bitmapscan"))
    assert_two_index_ranges_of_groups(plan)


def test_a_big_runs_root_groups_are_read_from_their_index_range():
    """A big run holds most of the groups, nearly all under parents; most runs' groups
    are their roots'. With the run's id in the query, PostgreSQL multiplied the two
    shares (the run's rows, the roots' rows) and expected hundreds of the run's root
    groups, so it read the whole table (at 1 M steps a parallel seq scan, 15-35 ms of
    every find-in-run page, §16c): the roots' range is read from the index, as the
    parents' ranges are, with the statistics a big store has (ANALYZEd, no plan node
    made dear)."""
    big, *small = make_runs(301)
    root = {"kind": StepGroup.NAME, "count": 3, "bins": []}
    groups = [StepGroup(run=big, parent_id=None, name=f"root {n}", **root) for n in (0, 1)]
    groups += [StepGroup(run=big, parent_id=10_000 + n, name="child", **root) for n in range(4_000)]
    groups += [StepGroup(run=run, parent_id=None, name="root", **root) for run in small]
    StepGroup.objects.bulk_create(groups)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE traces_stepgroup")
    parent = make_steps(big, 1)[0]
    levels = {None: [parent], 10_007: []}
    read = lambda: queries.groups.groups_of_levels(big.pk, levels)  # noqa: E731
    _, siblings, _ = read()
    assert sorted(siblings[None]) == ["root 0", "root 1"] and siblings[10_007]["child"].count == 3
    [(_, plan)] = plans_of(read, dear=())
    assert_two_index_ranges_of_groups(plan)


def assert_two_index_ranges_of_groups(plan: list[str]) -> None:
    """The groups read as two ranges of the (run, parent) index, nothing else of them."""
    group_reads = [
        step for step in plan if "stepgroup" in step or step.startswith(("SCAN g", "SEARCH g"))
    ]
    assert len(group_reads) == 2 and all(
        step in ("Index Scan stepgroup_parent",) or "USING INDEX stepgroup_parent" in step
        for step in group_reads
    ), plan


@on_postgres
def test_the_site_plans_without_jit():
    """A page's query is planned without JIT compilation (settings: -c jit=off): a
    row estimate that grows with the store made PostgreSQL compile a 100 ms query
    for 1-3 s."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


def _vm_instructions(read):
    """SQLite: what `read()` gives, and about how many VM instructions it ran (to 100)."""
    connection.ensure_connection()
    instructions = 0

    def count():
        nonlocal instructions
        instructions += 100
        return 0

    connection.connection.set_progress_handler(count, 100)
    try:
        return read(), instructions
    finally:
        connection.connection.set_progress_handler(None, 0)


def test_log_search_matches_a_level_inside_fts5(worded_lines):
    """SQLite: a line's level is a column of the log lines' FTS5 table (migration
    0041), matched there with the words: `fetch_charges` at level error (none of its
    3,000 lines) runs fewer VM instructions than one a line of the word; before, each
    was joined to its row for its level (~5 each, 15,000 in all)."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's FTS5")
    from traces.search.logs import search_logs

    found, instructions = _vm_instructions(lambda: search_logs("fetch_charges", {"level": "error"}))
    assert (found.count, found.items) == (0, [])
    assert instructions < 3_000, instructions
    assert search_logs("fetch_charges", {"level": "info"}).count == 1_000


@pytest.fixture
def named_steps(worded_lines):
    """2,000 steps of worded_lines' run, one in 20 named `fetch` (100), the others
    `send`; the 3,000 `fetch_charges` lines spread over them in turn; ANALYZEd."""
    steps = make_steps(worded_lines, 2_000)
    fetch = [step.pk for step in steps[::20]]
    Step.objects.filter(run=worded_lines).update(name="send")
    Step.objects.filter(pk__in=fetch).update(name="fetch")
    ids = list(LogEntry.objects.filter(level="info").order_by("pk").values_list("pk", flat=True))
    for offset, step in enumerate(steps):
        LogEntry.objects.filter(pk__in=ids[offset :: len(steps)]).update(step=step)
    _step_names_settled()
    return fetch


@on_postgres
def test_log_search_matches_a_step_name_inside_the_index(named_steps, monkeypatch):
    """A common word with a step name: each bucket's lines of the word and the name
    are read from the GIN index, the name a key in it beside the level (migration
    0043): the name's 150 lines of the word, no step and no other line of the word
    (before, each bucket's lines were joined to the name's 100 steps). (Its 150 lines
    are few: walked here as a name of more lines would be.)"""
    import traces.search.logs as search_logs_module
    from traces.search.logs import search_logs

    monkeypatch.setattr(search_logs_module, "NAMED_LINES", 0)
    found = None

    def read():
        nonlocal found
        found = search_logs("fetch_charges", {"step": "fetch"})

    plans = _analyzed(read, off=("seqscan", "indexscan"))
    wanted = list(
        LogEntry.objects.filter(step__name="fetch", message__contains="fetch_charges")
        .order_by("-pk")
        .values_list("pk", flat=True)
    )
    assert [line.pk for line in found.items] == wanted[:50] and found.count == len(wanted)
    [walk] = [plan for sql, plan in plans if "WITH RECURSIVE walk" in sql]
    indexes = {node.get("Index Name") for node in _all_nodes(walk)}
    assert indexes & {"step_name", "step_run_name"} == set(), indexes
    assert _steps_read(walk) == 0 and _log_reads(walk) == (len(wanted), len(wanted))


def test_log_search_for_a_step_name_no_step_has_reads_no_line(named_steps):
    """SQLite: a step name that no step has (one test of step_name, before the
    word's matches are joined) joins none of the word's 3,000 lines to its step:
    fewer VM instructions than one a line (before, ~5 a line)."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's FTS5")
    from traces.search.logs import search_logs

    found, instructions = _vm_instructions(
        lambda: search_logs("fetch_charges", {"step": "nosuchstep"})
    )
    assert (found.count, found.items) == (0, [])
    assert instructions < 3_000, instructions
    assert search_logs("fetch_charges", {"step": "fetch"}).count == 3_000 // 20


@pytest.fixture
def idle_steps(named_steps, worded_lines):
    """named_steps, and 5 more steps named `idle` with 2 lines each, none holding
    `fetch_charges` (the run's error lines); ANALYZEd."""
    steps = make_steps(worded_lines, 5, start=2_000)
    Step.objects.filter(pk__in=[step.pk for step in steps]).update(name="idle")
    ids = LogEntry.objects.filter(level="error").order_by("pk").values_list("pk", flat=True)
    for offset, step in enumerate(steps):
        LogEntry.objects.filter(pk__in=ids[offset * 2 : offset * 2 + 2]).update(step=step)
    _step_names_settled()
    return steps


@on_postgres
def test_log_search_reads_a_few_named_steps_lines_not_the_word_s(idle_steps, monkeypatch):
    """A common word with a step name of few steps and lines (`idle`: 5 steps, 10 lines,
    none holding the word): those lines are read through their steps and the words
    tested on each; no walk of the word's 3,000 lines, each joined to its step (what
    a name of more lines is still read by: the walk, below)."""
    import traces.search.logs as search_logs_module
    from traces.search.logs import search_logs

    found = None

    def read():
        nonlocal found
        found = search_logs("fetch_charges", {"step": "idle"})

    plans = _analyzed(read)
    assert (found.count, found.items) == (0, [])
    assert not [sql for sql, _ in plans if "WITH RECURSIVE walk" in sql]
    # The leapfrog, a few entries a hop (6 hops); the read, the 10 idle lines.
    [hops] = [plan for sql, plan in plans if "WITH RECURSIVE hop" in sql]
    [lines] = [plan for sql, plan in plans if "to_tsvector" in sql]
    assert _log_reads(hops)[1] <= 60 and _log_reads(lines)[1] <= 2 * 10
    # More lines than NAMED_LINES: the walk, the name ANDed inside the GIN index
    # (migration 0043): none of the word's 3,000 lines read (before, all of them,
    # each joined to its step).
    monkeypatch.setattr(search_logs_module, "NAMED_LINES", 9)
    plans = _analyzed(read, off=("seqscan", "indexscan"))
    assert (found.count, found.items) == (0, [])
    worded = [plan for sql, plan in plans if "to_tsvector" in sql]
    assert worded and [_log_reads(plan) for plan in worded] == [(0, 0)] * len(worded)


def test_log_search_for_a_step_name_of_few_lines_reads_no_match_of_the_word(idle_steps):
    """SQLite: a step name of few steps and lines (`idle`: 10 lines, none holding
    `fetch_charges`) tests each of its lines in FTS5 by rowid: fewer VM instructions
    than one for each of the word's 3,000 matches, which FTS5 gave newest first to be
    joined to their step (~5 each)."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's FTS5")
    from traces.search.logs import search_logs

    found, instructions = _vm_instructions(lambda: search_logs("fetch_charges", {"step": "idle"}))
    assert (found.count, found.items) == (0, [])
    assert instructions < 3_000, instructions
    assert search_logs("something", {"step": "idle"}).count == 10


def test_log_search_matches_a_step_name_inside_fts5(idle_steps, monkeypatch):
    """SQLite: a line's step name is a column of the log lines' FTS5 table (migration
    0043), matched there with the words: `fetch_charges` of steps named `idle` (none
    of its 3,000 lines), read as a name of many lines would be, runs fewer VM
    instructions than one a line of the word; before, each was joined to its step."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's FTS5")
    import traces.search.logs as search_logs_module
    from traces.search.logs import search_logs

    monkeypatch.setattr(search_logs_module, "NAMED_LINES", 0)
    found, instructions = _vm_instructions(lambda: search_logs("fetch_charges", {"step": "idle"}))
    assert (found.count, found.items) == (0, [])
    assert instructions < 3_000, instructions
    assert search_logs("fetch_charges", {"step": "fetch"}).count == 3_000 // 20


def test_the_newest_lines_of_a_step_name_are_walked_newest_first(named_steps):
    """SQLite, without words: the newest lines of a step name are read newest first
    through the primary key, each joined to its step, until a page passes; not the
    name's steps from step_name, all their lines read and sorted."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's planner (PostgreSQL weighs it with its statistics)")
    from traces.search.logs import search_logs

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    read = lambda: search_logs("", {"step": "fetch"})  # noqa: E731
    assert [line.pk for line in read().items] == list(
        LogEntry.objects.filter(step__name="fetch").order_by("-pk").values_list("pk", flat=True)
    )[:50]
    [plan] = [plan for sql, plan in plans_of(read) if "ORDER BY line.id DESC" in sql]
    assert not any("TEMP B-TREE" in step or "step_name" in step for step in plan), plan
