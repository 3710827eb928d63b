"""How the store's rows reach the database: held step summaries, ids per ingest."""

from datetime import UTC, datetime

import pytest
from django.db import connection, transaction
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from traces.ingest import store
from traces.ingest.records import CallRecord, LinkRecord, LogRecord, RunRecord, StepRecord
from traces.ingest.store import RunIndex, write_run
from traces.models import Call, EntityLink, LogEntry, Run, Step

pytestmark = pytest.mark.django_db(transaction=True)


def _tree_run(external_id: str, steps: int) -> RunRecord:
    """A chain of parents, each with two leaves, calls and links; one leaf fails."""
    records, calls, links = [], [], []
    parent = None
    for index in range(steps):
        key = f"s{index}"
        failed = index == steps - 1
        records.append(
            StepRecord(
                key=key,
                parent_key=parent,
                status="failed" if failed else "succeeded",
                error="boom" if failed else "",
                started_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
        if index % 3 == 0:
            parent = key
        if index % 4 == 0:
            calls.append(CallRecord(key=f"c{index}", step_key=key, tool="t"))
        if index % 5 == 0:
            links.append(
                LinkRecord(step_key=key, link_type="input", entity_type="e", entity_id="1")
            )
    logs = [LogRecord(seq=1, message="hello", step_key="s0")]
    return RunRecord(
        format="runs", external_id=external_id, steps=records, calls=calls, links=links, logs=logs
    )


def _assert_summaries_match_rows(run: Run) -> None:
    steps = Step.objects.filter(run=run).annotate(
        child_rows=Count("children", distinct=True),
        calls_made=Count("calls", distinct=True),
        links_made=Count("links", distinct=True),
    )
    failed_keys = set(Step.objects.filter(run=run, status="failed").values_list("key", flat=True))
    parent_of = dict(Step.objects.filter(run=run).values_list("id", "parent_id"))
    in_failed_subtree = set()
    for step_id in Step.objects.filter(run=run, key__in=failed_keys).values_list("id", flat=True):
        while step_id is not None:
            in_failed_subtree.add(step_id)
            step_id = parent_of[step_id]
    for step in steps:
        assert (step.child_count, step.call_count, step.link_count) == (
            step.child_rows,
            step.calls_made,
            step.links_made,
        ), step.key
        assert step.failed_subtree == (step.pk in in_failed_subtree), step.key


def test_a_run_longer_than_the_held_steps_gets_every_summary(monkeypatch):
    # The first steps go out before their calls and links are counted: they need
    # the UPDATE; the last ones get their summaries in the INSERT.
    monkeypatch.setattr(store, "HELD_STEPS", 40)
    with transaction.atomic():
        outcome = write_run(_tree_run("long", 130), source_file=None, origin="")
    run = Run.objects.get(pk=outcome.run_id)
    assert (run.step_count, run.call_count, run.link_count, run.log_count) == (130, 33, 26, 1)
    assert run.steps_failed == 1 and run.max_depth == 43
    first = Step.objects.get(run=run, key="s0")
    assert (first.child_count, first.call_count, first.link_count) == (3, 1, 1)
    assert first.failed_subtree
    _assert_summaries_match_rows(run)


def test_a_short_run_is_written_with_its_summaries_and_no_update():
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        outcome = write_run(_tree_run("short", 30), source_file=None, origin="")
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    run = Run.objects.get(pk=outcome.run_id)
    assert run.step_count == 30 and run.steps_failed == 1
    _assert_summaries_match_rows(run)


def test_ids_are_reserved_a_few_times_per_ingest_not_once_per_run():
    index = RunIndex()
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        for number in range(60):
            write_run(_tree_run(f"r{number}", 3), source_file=None, origin="", index=index)
        index.settle()  # the runs' rows and read models, as write_run's caller must
    reservations = [
        q for q in queries.captured_queries if "nextval" in q["sql"] or "MAX(id)" in q["sql"]
    ]
    # SQLite: one MAX(id) per model; PostgreSQL: reservations doubling from 16.
    assert 2 <= len(reservations) <= 8
    assert Run.objects.count() == 60 and Step.objects.count() == 180
    assert Call.objects.count() == 60 and EntityLink.objects.count() == 60
    assert LogEntry.objects.count() == 60


def test_a_files_new_runs_go_in_with_one_statement_and_a_repeated_run_is_updated():
    index, statements = RunIndex(), []

    def note(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note), transaction.atomic():
        for number in range(20):
            write_run(_tree_run(f"r{number}", 3), source_file=None, origin="", index=index)
        assert not Run.objects.exists()  # held until settle()
        again = _tree_run("r3", 4)
        again.fingerprint = "changed"
        outcome = write_run(again, source_file=None, origin="", index=index)
        index.settle()
    table = f"INSERT INTO {Run._meta.db_table} "
    inserts = [sql for sql in statements if sql.startswith(table)]
    assert outcome.action == "updated"
    assert Run.objects.count() == 20 and Run.objects.get(external_id="r3").step_count == 4
    # All 20, written when r3 came again (to be updated): on SQLite several rows a
    # statement, 16 + 4 (InstancePlan.insert_rows; executemany was one execution a
    # row), on PostgreSQL by COPY (which the wrapper does not see).
    if connection.vendor == "sqlite":
        assert len(inserts) == 2 and [sql.count("), (") for sql in inserts] == [15, 3]
    else:
        assert inserts == []


def test_runs_with_global_ids_are_looked_up_together_and_found_again():
    records = [_tree_run(f"g{number}", 2) for number in range(250)]
    for record in records:
        record.fingerprint = "same"
    with transaction.atomic():
        index = RunIndex()
        for record in records[:100]:
            write_run(record, source_file=None, origin="", index=index)
        index.settle()
    statements = []

    def note(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note), transaction.atomic():
        index = RunIndex()
        outcomes = [
            write_run(record, source_file=None, origin="", index=index)
            for record in index.ahead(iter(records))
        ]
        index.settle()
    lookups = [sql for sql in statements if "external_id IN" in sql or "LIMIT 1" in sql]
    assert len(lookups) == 2  # 200 ahead, then the last 50
    assert [o.action for o in outcomes] == ["unchanged"] * 100 + ["added"] * 150
    assert Run.objects.count() == 250


def test_hostile_failed_item_counts_neither_fail_the_run_nor_count():
    record = _tree_run("items", 3)
    record.steps[0].items_failed = 10**30  # "1e30" in a runs database
    record.steps[1].items_failed = -5
    record.steps[2].items_failed = 4
    with transaction.atomic():
        write_run(record, source_file=None, origin="")
    run = Run.objects.get(external_id="items")
    assert run.steps_items_failed == store.MAX_INT32  # held, not overflowed
    by_key = dict(Step.objects.filter(run=run).values_list("key", "failed_subtree"))
    assert by_key["s0"] is True and by_key["s1"] is False  # -5 marks nothing


def test_a_global_run_read_ahead_while_held_back_is_updated_when_it_comes_again(monkeypatch):
    """Records X A B C | Y Y' X' D, four read ahead at a time: X' finds X stored."""
    monkeypatch.setattr(store, "LOOKUP_AHEAD", 4)
    names = ["x", "a", "b", "c", "y", "y", "x", "d"]
    records = [_tree_run(name, 2) for name in names]
    records[5].fingerprint, records[6].fingerprint = "again", "again"
    with transaction.atomic():
        index = RunIndex()
        for record in index.ahead(iter(records)):
            write_run(record, source_file=None, origin="", index=index)
        index.settle()
    assert sorted(Run.objects.values_list("external_id", flat=True)) == sorted(set(names))
