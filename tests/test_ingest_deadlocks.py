"""Concurrent ingests meet on the read models' counter rows (a hot failure cause, the
`account:acc_main` subject every run has) without deadlocking: each transaction
applies its read models' changes once, before it commits, in one order
(traces/ingest/read_models.py); a write that still meets another writer
(PostgreSQL's 40P01 / 40001) is tried again, and a file rolled back takes its
changes with it."""

import io
import json
import random
import shutil

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection

from tests.test_read_model_causes import assert_read_model_is_the_recount as causes_recounted
from tests.test_read_model_entities import assert_read_model_is_the_recount as entities_recounted
from tests.test_read_model_runs import assert_read_models_are_the_recount as runs_recounted
from tests.test_read_model_trends import assert_read_models_are_the_recount as trends_recounted
from traces.ingest import batches, loader, parallel, read_models
from traces.ingest.loader import ingest_paths
from traces.models import EntityCounter, FailureCause, Run, TraceFile

pytestmark = pytest.mark.django_db(transaction=True)

CAUSES = [
    "upstream timeout after 30s",
    "connection reset by peer",
    "duplicate key value violates unique constraint",
    "rate limited by stripe",
]
CUSTOMERS = [f"cus_{number:03}" for number in range(6)]
BASE_NS = 1_772_430_000_000_000_000  # 2026-03-02T05:40:00Z


def _attribute(key: str, value) -> dict:
    if isinstance(value, list):
        items = [
            {"kvlistValue": {"values": [_attribute(k, v) for k, v in item.items()]}}
            for item in value
        ]
        return {"key": key, "value": {"arrayValue": {"values": items}}}
    return {"key": key, "value": {"stringValue": value}}


def _span(trace_id, span_id, parent, name, start, attributes, error=None) -> dict:
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 40_000_000),
        "attributes": attributes,
    }
    if parent:
        span["parentSpanId"] = parent
    if error:
        span["status"] = {"code": 2, "message": error}
    return span


def write_shared_otlp_files(directory, count: int, seed: int = 7) -> list:
    """`count` OTLP/JSON files of one trace each, like the pages mix: every run's root
    step has the subject account:acc_main, its children fail with a few shared causes
    (over three days) and link to a few shared customers, each file a different
    subset in a different order, so two writers take the same rows in many orders."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        trace_id = f"{index + 1:032x}"
        start = BASE_NS + index * 3_600 * 10**9 * 7  # a few days in all
        run, root = f"{index + 1:08x}00000000", f"{index + 1:08x}ffffffff"
        spans = [
            _span(trace_id, run, None, "sync", start, []),  # the run
            _span(trace_id, root, run, "main", start, [  # its root step
                _attribute("tracer.entity_type", "account"),
                _attribute("tracer.entity_id", "acc_main"),
            ]),
        ]  # fmt: skip
        failing = rng.random() < 0.5  # runs failed and succeeded: two RunCount rows
        for child in range(rng.randint(3, 6)):
            links = [
                {"link_type": rng.choice(["input", "output", "affected"]),
                 "entity_type": "customer", "entity_id": customer}
                for customer in rng.sample(CUSTOMERS, rng.randint(1, 4))
            ]  # fmt: skip
            error = rng.choice(CAUSES) if failing and rng.random() < 0.6 else None
            span_id = f"{index + 1:08x}{child + 1:08x}"
            attributes = [_attribute("tracer.entity_links", links)]
            spans.append(_span(trace_id, span_id, root, f"step-{child}", start + child, attributes,
                               error))  # fmt: skip
        document = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
        path = directory / f"trace-{index:04}.json"
        path.write_text(json.dumps(document))
        paths.append(path)
    return paths


def assert_every_read_model_is_the_recount():
    causes_recounted()
    entities_recounted()
    runs_recounted()
    trends_recounted()


def deadlock() -> OperationalError:
    """What PostgreSQL raises through Django when it breaks a deadlock."""

    class DeadlockDetected(Exception):
        sqlstate = "40P01"

    error = OperationalError("deadlock detected")
    error.__cause__ = DeadlockDetected("deadlock detected")
    return error


def test_the_generated_files_share_causes_and_entities(tmp_path):
    write_shared_otlp_files(tmp_path, 12)
    report = ingest_paths([tmp_path])
    assert report.failed == [] and Run.objects.count() == 12
    assert EntityCounter.objects.get(entity_type="account", entity_id="acc_main").runs == 12
    assert FailureCause.objects.filter(count__gt=1).exists()
    assert EntityCounter.objects.filter(entity_type="customer", runs__gt=2).count() == 6
    assert_every_read_model_is_the_recount()


def test_two_parallel_ingests_of_files_sharing_counters_never_fail_a_file(tmp_path, monkeypatch):
    """`ingest --jobs 2` on PostgreSQL: two processes write files whose runs share
    a subject entity, customers and failure causes, each in transactions of many
    files. Before the read models were applied once per transaction, in one order,
    this failed files with "deadlock detected"."""
    if connection.vendor != "postgresql":
        pytest.skip("two writers at once: PostgreSQL (SQLite has one writer)")
    write_shared_otlp_files(tmp_path / "traces", 240)
    out, err = io.StringIO(), io.StringIO()
    # The planner reads a file a worker failed again, alone: what failed in the workers.
    again_if_failed, failed_in_workers = parallel._again_if_failed, []

    def recorded(item, share, options):
        if item["outcome"] == "failed":
            failed_in_workers.append(item["error"])
        return again_if_failed(item, share, options)

    monkeypatch.setattr(parallel, "_again_if_failed", recorded)

    call_command("ingest", str(tmp_path), "--jobs", "2", "--json", stdout=out, stderr=err)

    assert failed_in_workers == []
    summary = json.loads(out.getvalue())
    assert summary["files"]["failed"] == 0 and "deadlock" not in err.getvalue()
    assert summary["files"]["ingested"] == 240 and Run.objects.count() == 240
    assert EntityCounter.objects.get(entity_type="account", entity_id="acc_main").runs == 240
    assert_every_read_model_is_the_recount()


def test_a_deadlock_in_the_read_models_apply_is_tried_again_and_counted_once(tmp_path, monkeypatch):
    write_shared_otlp_files(tmp_path, 6)
    apply_entities, calls = read_models.apply_entities, []

    def deadlocking(*args, **kwargs):
        calls.append(1)
        apply_entities(*args, **kwargs)  # its rows written, then the deadlock
        if len(calls) == 1:
            raise deadlock()

    monkeypatch.setattr(read_models, "apply_entities", deadlocking)
    monkeypatch.setattr(batches, "FIRST_BACKOFF_SECONDS", 0.001)
    monkeypatch.setattr(batches, "MAX_SECONDS", 3600)  # one transaction, however slow

    report = ingest_paths([tmp_path])

    assert report.failed == [] and len(calls) == 2
    assert Run.objects.count() == 6
    assert EntityCounter.objects.get(entity_type="account", entity_id="acc_main").runs == 6
    assert_every_read_model_is_the_recount()


def test_a_file_that_meets_a_deadlock_is_written_again_once(tmp_path, monkeypatch):
    write_shared_otlp_files(tmp_path, 4)
    write_run, attempts = loader.write_run, []

    def deadlocking(record, *, source_file, **kwargs):
        outcome = write_run(record, source_file=source_file, **kwargs)  # written, then
        if source_file.path.endswith("trace-0002.json"):
            attempts.append(1)
            if len(attempts) == 1:
                raise deadlock()
        return outcome

    monkeypatch.setattr(loader, "write_run", deadlocking)
    monkeypatch.setattr(batches, "FIRST_BACKOFF_SECONDS", 0.001)

    report = ingest_paths([tmp_path])

    assert len(attempts) == 2, "the file was not written again"
    assert report.failed == [] and [r.outcome for r in report.files] == ["ingested"] * 4
    assert [len(r.runs_added) for r in report.files] == [1, 1, 1, 1]
    assert Run.objects.count() == 4 and report.summary()["runs"] == 4
    assert EntityCounter.objects.get(entity_type="account", entity_id="acc_main").runs == 4
    assert_every_read_model_is_the_recount()


def test_a_file_that_keeps_meeting_deadlocks_fails_alone_by_name(tmp_path, monkeypatch):
    write_shared_otlp_files(tmp_path, 3)
    write_run = loader.write_run

    def deadlocking(record, *, source_file, **kwargs):
        outcome = write_run(record, source_file=source_file, **kwargs)
        if source_file.path.endswith("trace-0001.json"):
            raise deadlock()
        return outcome

    monkeypatch.setattr(loader, "write_run", deadlocking)
    monkeypatch.setattr(batches, "FIRST_BACKOFF_SECONDS", 0.001)

    report = ingest_paths([tmp_path])

    (bad,) = report.failed
    assert bad.path.endswith("trace-0001.json")
    assert bad.error.endswith(
        "trace-0001.json: internal error while ingesting (OperationalError: deadlock detected)"
        f" (tried {batches.ATTEMPTS} times)"
    )
    assert Run.objects.count() == 2
    assert_every_read_model_is_the_recount()


def test_a_bad_file_written_together_fails_alone_and_its_counts_go_with_it(
    samples, tmp_path, monkeypatch
):
    """Small files written together, one of which fails after its runs and their read
    model changes were gathered: the group is written again file by file, and the bad
    one's changes are dropped with its savepoint, never applied."""
    monkeypatch.setattr(batches, "MAX_SECONDS", 3600)  # one transaction
    for position, name in enumerate(["01-success-always", "02-node-error", "03-retry"]):
        source = samples / "greentic" / name / "trace.json"
        if source.exists():
            (tmp_path / str(position)).mkdir()
            shutil.copy(source, tmp_path / str(position) / "trace.json")
    bad_path = str(tmp_path / "1")
    write_rows, write_row, together = loader._write_file_rows, loader._write_file_row, []

    def failing_rows(rows):
        together.append(len(rows))
        if any(trace_file.path.startswith(bad_path) for trace_file, _stored in rows):
            raise OperationalError("disk I/O error")
        write_rows(rows)

    def failing_row(trace_file, stored, columns):
        if trace_file.path.startswith(bad_path):
            raise OperationalError("disk I/O error")
        write_row(trace_file, stored, columns)

    monkeypatch.setattr(loader, "_write_file_rows", failing_rows)
    monkeypatch.setattr(loader, "_write_file_row", failing_row)

    report = ingest_paths([tmp_path])

    files = len(report.files)
    assert files >= 2 and together == [files], "the files were not tried together first"
    (bad,) = report.failed
    assert bad.path.startswith(bad_path) and "disk I/O error" in bad.error
    assert Run.objects.count() == files - 1
    assert not Run.objects.filter(source_file__path=bad.path).exists()
    assert TraceFile.objects.get(path=bad.path).status == "error"
    assert FailureCause.objects.exists() or files - 1 < 2
    assert_every_read_model_is_the_recount()
