import shutil
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.workflow_pair import PAIR_ID, write_pair
from traces.ingest import detect, workflow
from traces.ingest.common import read_head
from traces.ingest.records import ParseError, Status
from traces.ingest.workflow.redaction import redact
from traces.ingest.workflow.steps import go_duration_ms

ORDERS_QUERY = "5a702cfa-93ea-4c4e-98f3-3418f3d4e711"
EXPLICIT = "4bcb6b22-63db-41fc-aa7c-314bf01dbf29"
STOPPED = "15ad9a9d-0a57-4f35-b9b8-163510b8fe22"
CHECKOUT = "e4bc6e82-9439-4746-98dd-d2efcaf078b0"
NOTIFY = "5f221dfc-8d64-43ad-9957-7b6b4cb05ec1"
LOGIN = "4e0751d7-59a7-4b13-b315-d969b7ccba58"
RUNNING = "dfbaaafa-6940-476c-b540-cce4cc5d375a"
TOKEN = "tok_efc782e4d461b699"


def collect(path: Path) -> dict:
    """Every run by external id, children read while iterating (as the store does)."""
    runs = {}
    for run in workflow.parse(path):
        run.steps, run.logs = list(run.steps), list(run.logs)
        runs[run.external_id] = run
    return runs


def real_steps(runs: dict) -> list:
    return [s for run in runs.values() for s in run.steps if not s.synthetic]


def all_logs(runs: dict) -> list:
    return [log for run in runs.values() for log in run.logs]


@pytest.fixture
def folder(samples: Path) -> Path:
    return samples / "workflow"


@pytest.fixture
def main(folder: Path) -> Path:
    return folder / "workflow.db"


@pytest.fixture
def parsed(main: Path) -> dict:
    return collect(main)


@pytest.fixture
def copies(folder: Path, tmp_path: Path) -> Path:
    """A directory holding copies of both databases; returns the workflow.db copy."""
    for name in ("workflow.db", "events.db"):
        shutil.copyfile(folder / name, tmp_path / name)
    return tmp_path / "workflow.db"


def execute(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def drop_column(path: Path, table: str, column: str) -> None:
    conn = sqlite3.connect(path)
    try:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[1] != column]
        names = ", ".join(columns)
        conn.execute(f"ALTER TABLE {table} RENAME TO old_table")
        conn.execute(f"CREATE TABLE {table} ({names})")
        conn.execute(f"INSERT INTO {table} SELECT {names} FROM old_table")
        conn.execute("DROP TABLE old_table")
        conn.commit()
    finally:
        conn.close()


def prints(path: Path) -> dict:
    return {run.external_id: run.fingerprint for run in workflow.parse(path)}


# --- recognising and companions ---------------------------------------------------------------


def test_sniff_claims_the_two_databases_and_nothing_else(samples: Path):
    claimed = [
        path.relative_to(samples).as_posix()
        for path in sorted(samples.rglob("*"))
        if path.is_file() and workflow.sniff(path, read_head(path))
    ]
    assert claimed == ["workflow/events.db", "workflow/workflow.db"]
    assert detect(samples / "workflow" / "events.db") is workflow


def test_companions(folder: Path, main: Path):
    events = folder / "events.db"
    assert workflow.companion_of(events) == main
    assert workflow.companion_of(main) is None
    assert workflow.companion_paths(main) == [events]
    assert workflow.companion_paths(events) == []


def test_events_db_alone_is_an_error(folder: Path, tmp_path: Path):
    alone = tmp_path / "events.db"
    shutil.copyfile(folder / "events.db", alone)
    assert workflow.sniff(alone, read_head(alone))
    assert workflow.companion_of(alone) is None
    with pytest.raises(ParseError, match="holds only execution events; put it beside"):
        collect(alone)


def test_events_db_beside_its_workflow_db_parses_as_the_workflow_db(folder: Path, main: Path):
    from_events = collect(folder / "events.db")
    assert {k: r.fingerprint for k, r in from_events.items()} == prints(main)
    assert {r.origin for r in from_events.values()} == {str(main.resolve())}


def test_companion_found_under_another_name(folder: Path, tmp_path: Path):
    shutil.copyfile(folder / "workflow.db", tmp_path / "data.sqlite")
    shutil.copyfile(folder / "events.db", tmp_path / "event-store.sqlite")
    assert workflow.companion_of(tmp_path / "event-store.sqlite") == (tmp_path / "data.sqlite")
    assert workflow.companion_paths(tmp_path / "data.sqlite") == [tmp_path / "event-store.sqlite"]


# --- executions --------------------------------------------------------------------------------


def test_executions(parsed: dict, main: Path):
    assert len(parsed) == 7
    assert Counter(r.raw_status for r in parsed.values()) == {
        "completed": 3,
        "failed": 3,
        "running": 1,
    }
    assert Counter(r.status for r in parsed.values()) == {
        Status.SUCCEEDED: 3,
        Status.FAILED: 3,
        Status.RUNNING: 1,
    }
    assert {r.origin for r in parsed.values()} == {str(main.resolve())}
    assert all(r.completeness is None for r in parsed.values())


def test_an_execution_stopped_by_a_cancelled_context_is_cancelled(copies: Path):
    execute(
        copies,
        'UPDATE workflow_executions SET error_message = \'step "charge" failed: '
        "call cancelled: context canceled' WHERE status = 'failed' AND error_message "
        "LIKE '%invalid credentials%'",
    )
    runs = collect(copies)
    cancelled = [r for r in runs.values() if r.status == Status.CANCELLED]
    assert len(cancelled) == 1
    assert cancelled[0].raw_status == "failed"  # the source's word, kept
    assert cancelled[0].error.endswith("context canceled")
    assert Counter(r.status for r in runs.values())[Status.FAILED] == 2
    # A deadline is a timeout, not a cancel: still failed.
    execute(copies, "UPDATE workflow_executions SET error_message = 'context deadline exceeded' "
            "WHERE error_message LIKE '%context canceled'")  # fmt: skip
    assert Counter(r.status for r in collect(copies).values())[Status.FAILED] == 3


def test_pipeline_names_trigger_and_actor(parsed: dict):
    assert {key: run.name for key, run in parsed.items()} == {
        ORDERS_QUERY: "orders-queries:{id}",
        EXPLICIT: "orders-commands:orders",
        STOPPED: "orders-commands:orders",
        CHECKOUT: "checkout-commands:checkout",
        NOTIFY: "notify-commands:dispatch",
        LOGIN: "auth-commands:login",
        RUNNING: "reports-queries:sales",
    }
    assert all(run.type == run.name for run in parsed.values())
    assert parsed[LOGIN].actor == "" and parsed[EXPLICIT].actor == "bob@acme.io"
    assert parsed[CHECKOUT].trigger == "POST /api/v1/checkout"
    assert parsed[STOPPED].error.startswith('step "reserve-stock" failed')


def test_execution_attributes(parsed: dict):
    attributes = parsed[EXPLICIT].attributes
    assert attributes["workflow_id"] == "35bf992d-c9e9-4616-a12e-7696a6cecc1b"
    assert attributes["explicit_trace"] is True and attributes["capture_io"] is True
    assert attributes["config_version"].startswith("sha256:")
    assert attributes["metadata"]["explicit_trace"] is True
    assert (attributes["trigger_data"], attributes["output_data"]) == ({}, {})
    assert attributes["step_count"] == 10
    assert "explicit_trace" not in parsed[ORDERS_QUERY].attributes


def test_sub_second_times_from_events(parsed: dict):
    run = parsed[EXPLICIT]
    assert run.started_at == datetime(2026, 7, 16, 9, 15, 27, 541078, tzinfo=UTC)
    assert run.duration_ms == 43
    assert run.finished_at == run.started_at + timedelta(milliseconds=43)
    # execution.failed is written before the saga compensates: the end is start + duration.
    checkout = parsed[CHECKOUT]
    assert checkout.finished_at == checkout.started_at + timedelta(milliseconds=10619)
    running = parsed[RUNNING]
    assert (running.finished_at, running.duration_ms) == (None, None)
    assert running.source_updated_at >= running.started_at


def test_run_progress(parsed: dict):
    def progress(key):
        run = parsed[key]
        return (run.items_total, run.items_processed, run.items_succeeded, run.items_failed)

    assert progress(ORDERS_QUERY) == (10, 10, 10, 0)
    assert progress(NOTIFY) == (8, 8, 5, 1)  # two guard-skipped steps count as processed
    assert progress(CHECKOUT) == (11, 8, 7, 1)  # compensation steps are not pipeline steps
    assert progress(RUNNING) == (10, 4, 4, 0)


def test_run_progress_classifies_statuses_as_the_steps_are(copies: Path):
    # Another writer's spelling: the steps read as succeeded/failed, so must the counts.
    execute(copies, "UPDATE execution_steps SET status = upper(status)")
    runs = collect(copies)
    notify = runs[NOTIFY]
    assert Counter(s.status for s in notify.steps) == {"succeeded": 5, "failed": 1, "skipped": 2}
    progress = (notify.items_processed, notify.items_succeeded, notify.items_failed)
    assert progress == (8, 5, 1)
    assert (runs[ORDERS_QUERY].items_succeeded, runs[STOPPED].items_failed) == (10, 1)


# --- steps -------------------------------------------------------------------------------------


def test_step_counts_and_resolution(parsed: dict):
    steps = real_steps(parsed)
    assert len(steps) == 54
    assert Counter(s.raw_status for s in steps) == {"completed": 45, "failed": 4, "running": 5}
    assert sum(s.type == "compensation" for s in steps) == 2
    never_closed = [s for s in steps if s.never_closed]
    assert len(never_closed) == 4
    assert all(s.status != Status.RUNNING and s.raw_status == "running" for s in never_closed)
    still_running = [s for s in steps if s.status == Status.RUNNING]
    assert [(s.name, s.never_closed) for s in still_running] == [("aggregate-sales", False)]


def test_guard_skipped_steps(parsed: dict):
    steps = {s.name: s for s in parsed[NOTIFY].steps}
    for name, reason in (("send-sms", "if evaluated to false"), ("send-push", "skip_if")):
        step = steps[name]
        assert (step.status, step.raw_status, step.never_closed) == ("skipped", "running", True)
        assert step.attributes["skip_reason"].startswith(reason)
        assert step.attributes["resolved_by"] == "step.skipped"
        assert step.finished_at is not None and step.duration_ms == pytest.approx(0.058781, 1)
    # on_error: skip keeps the failure, and says it was skipped over.
    email = steps["send-email"]
    assert (email.status, email.never_closed) == (Status.FAILED, False)
    assert email.attributes["skip_reason"].startswith("smtp: 421")


def still_running(path: Path, execution_id: str, last_event: str) -> None:
    """The execution as a copy taken before `last_event`: open, without that event's rows."""
    execute(
        path,
        "UPDATE workflow_executions SET status = 'running', completed_at = NULL, "
        f"duration_ms = 0 WHERE id = '{execution_id}'",
        f"DELETE FROM execution_logs WHERE execution_id = '{execution_id}' "
        f"AND (message = '{last_event}' OR message LIKE 'Execution completed%')",
    )
    execute(
        path.with_name("events.db"),
        f"DELETE FROM execution_events WHERE execution_id = '{execution_id}' "
        f"AND event_type = '{last_event}'",
    )


@pytest.mark.parametrize("with_events", [True, False])
def test_guard_skipped_steps_are_resolved_while_the_execution_runs(copies: Path, with_events):
    still_running(copies, NOTIFY, "execution.completed")
    if not with_events:
        copies.with_name("events.db").unlink()
    run = collect(copies)[NOTIFY]
    assert run.status == Status.RUNNING and run.finished_at is None
    steps = {s.name: s for s in run.steps}
    for name in ("send-sms", "send-push"):
        step = steps[name]
        assert (step.status, step.never_closed) == (Status.SKIPPED, True)
        assert step.attributes["resolved_by"] == "step.skipped"
        assert step.finished_at is not None
    # They are done: counted as processed, as once the execution has ended.
    assert (run.items_total, run.items_processed, run.items_succeeded) == (8, 8, 5)


def test_compensated_steps_are_resolved_while_the_execution_runs(copies: Path):
    still_running(copies, CHECKOUT, "saga.compensated")
    run = collect(copies)[CHECKOUT]
    assert run.status == Status.RUNNING
    steps = run.steps
    for child in steps[-2:]:
        assert (child.status, child.never_closed) == (Status.SUCCEEDED, True)
        assert child.attributes["resolved_by"] == "step.compensated"
    assert steps[-3].status == Status.SUCCEEDED  # the synthetic group


def test_a_step_nothing_resolves_stays_running_while_the_execution_runs(copies: Path):
    still_running(copies, NOTIFY, "execution.completed")
    execute(
        copies,
        f"DELETE FROM execution_logs WHERE execution_id = '{NOTIFY}' AND module_name = 'send-sms' "
        "AND message = 'step.skipped'",
    )
    execute(
        copies.with_name("events.db"),
        f"DELETE FROM execution_events WHERE execution_id = '{NOTIFY}' "
        "AND event_type = 'step.skipped' AND event_data LIKE '%send-sms%'",
    )
    run = collect(copies)[NOTIFY]
    sms = next(s for s in run.steps if s.name == "send-sms")
    assert (sms.status, sms.never_closed, sms.finished_at) == (Status.RUNNING, False, None)
    assert "resolved_by" not in sms.attributes
    assert run.items_processed == 7


def test_compensation_steps_under_one_synthetic_parent(parsed: dict):
    steps = parsed[CHECKOUT].steps
    names = [s.name for s in steps]
    assert names[-4:] == ["create-shipment", "compensation", "void-payment", "release-stock"]
    parent = steps[-3]
    assert (parent.key, parent.type, parent.status) == ("compensation", "compensation", "succeeded")
    assert parent.synthetic and parent.attributes == {"compensation_steps": 2}
    assert not any(s.synthetic for s in steps if s is not parent)
    for child in steps[-2:]:
        assert child.parent_key == "compensation"
        assert (child.status, child.raw_status, child.never_closed) == (
            Status.SUCCEEDED,
            "running",
            True,
        )
        assert child.attributes["resolved_by"] == "step.compensated"
    assert parent.started_at == steps[-2].started_at
    assert parent.finished_at == steps[-1].finished_at
    assert steps[-4].status == Status.FAILED


def test_step_order_and_precise_times(parsed: dict):
    steps = parsed[ORDERS_QUERY].steps
    assert [s.attributes["sequence_num"] for s in steps] == list(range(1, 11))
    first = steps[0]
    assert first.started_at == datetime(2026, 7, 16, 9, 14, 3, 118714, tzinfo=UTC)
    assert first.duration_ms == pytest.approx(0.098245)


def test_truncated_io_is_flagged_and_kept_as_text(main: Path, tmp_path: Path):
    alone = tmp_path / "workflow.db"  # the README's counts are workflow.db's own
    shutil.copyfile(main, alone)
    parsed = collect(alone)
    truncated = [s for s in real_steps(parsed) if s.truncated]
    fields = Counter(f for s in truncated for f in s.attributes["truncated_fields"])
    assert fields == {"input": 6, "output": 1}
    assert len(truncated) == 7
    for step in truncated:
        for name in step.attributes["truncated_fields"]:
            value = getattr(step, name)
            assert isinstance(value, str) and value.endswith("[truncated]")
    catalog = next(s for s in parsed[EXPLICIT].steps if s.name == "load-catalog")
    assert isinstance(catalog.input, dict) and isinstance(catalog.output, str)


BIG_INPUT = {"note": "€" * 4000, "user": {"password": "hunter2", "name": "Ana"}}
BIG_OUTPUT = {"authorization": "Bearer abc", "rows": ["x" * 10300]}


def test_events_db_gives_the_whole_io_that_workflow_db_cut(tmp_path: Path):
    main = write_pair(tmp_path, [{"name": "load", "input": BIG_INPUT, "output": BIG_OUTPUT}])
    cut = sqlite3.connect(main).execute("SELECT CAST(input_data AS BLOB) FROM execution_steps")
    assert cut.fetchone()[0].endswith(b"\xe2\x82[truncated]")  # a split "€"
    (step,) = collect(main)[PAIR_ID].steps
    # Whole, and redacted as everything taken from events.db (the server redacts output).
    assert step.input == {"note": "€" * 4000, "user": {"password": "[REDACTED]", "name": "Ana"}}
    assert step.output == {"authorization": "[REDACTED]", "rows": ["x" * 10300]}
    assert step.truncated is False and "truncated_fields" not in step.attributes
    assert step.attributes["io_from_events"] == ["input", "output"]


def test_without_events_db_the_cut_io_is_kept_and_flagged(tmp_path: Path):
    main = write_pair(tmp_path, [{"name": "load", "input": BIG_INPUT, "output": {"ok": True}}])
    main.with_name("events.db").unlink()
    (step,) = collect(main)[PAIR_ID].steps
    assert isinstance(step.input, str) and step.input.endswith("\ufffd[truncated]")
    assert step.output == {"ok": True}
    assert step.truncated is True and step.attributes["truncated_fields"] == ["input"]
    assert "io_from_events" not in step.attributes


def test_sample_steps_show_their_whole_io_from_events_db(parsed: dict):
    assert not any(s.truncated for s in real_steps(parsed))
    steps = {s.name: s for s in parsed[EXPLICIT].steps}
    assert all(s.attributes["io_from_events"] == ["input", "output"] for s in steps.values())
    assert len(steps["load-catalog"].output["catalog"]) > 50
    assert steps["respond"].input["payment_token"] == "[REDACTED]"  # raw in events.db


def test_io_not_captured_is_none_and_flagged_not_an_empty_object(parsed: dict):
    # Only requests with X-Workflow-Trace: true capture I/O; the others keep the
    # columns' '{}' default, which is no value.
    plain = real_steps({k: r for k, r in parsed.items() if k != EXPLICIT})
    assert len(plain) == 44
    assert all((s.input, s.output) == (None, None) for s in plain)
    assert all(s.attributes["io_captured"] is False for s in plain)
    assert not any("io_captured" in s.attributes for s in parsed[EXPLICIT].steps)


def test_captured_empty_objects_are_values(tmp_path: Path):
    main = write_pair(tmp_path, [{"name": "noop", "input": {}, "output": {}}])
    (step,) = collect(main)[PAIR_ID].steps
    assert (step.input, step.output) == ({}, {}) and "io_captured" not in step.attributes
    main.with_name("events.db").unlink()
    (step,) = collect(main)[PAIR_ID].steps
    assert (step.input, step.output) == ({}, {}) and "io_captured" not in step.attributes


def test_uncaptured_pair_has_no_io(tmp_path: Path):
    main = write_pair(tmp_path, [{"name": "noop", "input": {"a": 1}, "output": {}}], metadata="{}")
    (step,) = collect(main)[PAIR_ID].steps
    assert (step.input, step.output, step.attributes["io_captured"]) == (None, None, False)


def test_split_utf8_character_is_replaced_not_fatal(copies: Path):
    copies.with_name("events.db").unlink()  # it would give the whole value
    execute(
        copies,
        "UPDATE execution_steps SET output_data = CAST(X'7B2261223A22C3' || "
        "CAST('[truncated]' AS BLOB) AS TEXT) WHERE step_name = 'respond' "
        f"AND execution_id = '{EXPLICIT}'",
    )
    step = next(s for s in collect(copies)[EXPLICIT].steps if s.name == "respond")
    assert step.output == '{"a":"\ufffd[truncated]'
    assert step.attributes["truncated_fields"] == ["input", "output"]


def test_redacted_token_stays_redacted(parsed: dict):
    save = next(s for s in parsed[EXPLICIT].steps if s.name == "save-order")
    assert save.output == {"order_id": "ord_2034958", "payment_token": "[REDACTED]"}
    # events.db holds the raw token: what we take from it is redacted the same way.
    text = orjson.dumps([(log.fields, log.attributes) for log in parsed[EXPLICIT].logs])
    assert TOKEN.encode() not in text
    steps = [(s.input, s.output, s.attributes) for s in parsed[EXPLICIT].steps]
    assert TOKEN.encode() not in orjson.dumps(steps)
    recorded = next(
        log
        for log in parsed[EXPLICIT].logs
        if log.message == "step.output_recorded" and log.step_key == save.key
    )
    # The log row points at the step, which holds the whole (redacted) value once.
    assert recorded.attributes["event_data"]["output"] == "[the whole value is the step's output]"


# --- logs and events ----------------------------------------------------------------------------


def test_log_counts_and_duplicates(parsed: dict):
    logs = all_logs(parsed)
    assert len(logs) == 259
    assert Counter(log.level for log in logs) == {"info": 109, "error": 7, "event": 143}
    # 116 info/error rows each repeated by an `event` row; 27 events are logged once.
    assert sum(log.duplicate for log in logs) == 116
    assert sum(not log.duplicate for log in logs) == 143
    assert all(log.level == "event" for log in logs if log.duplicate)


def test_logs_keep_row_order_and_point_at_their_steps(parsed: dict):
    for run in parsed.values():
        assert [log.seq for log in run.logs] == list(range(1, len(run.logs) + 1))
        ids = [log.attributes["log_id"] for log in run.logs]
        assert ids == sorted(ids)
        keys = {s.key: s.name for s in run.steps}
        for log in run.logs:
            name = log.attributes["module_name"]
            if name:
                assert keys[log.step_key] == name
    logs = parsed[ORDERS_QUERY].logs
    assert (logs[0].message, logs[0].step_key, logs[0].fields) == (
        "Execution started: pipeline=orders-queries:{id}",
        None,
        {"pipeline": "orders-queries:{id}", "step_count": 10},
    )
    saga = [log for log in parsed[CHECKOUT].logs if log.message.startswith("saga.")]
    assert [log.step_key for log in saga] == ["compensation", "compensation"]


def test_events_enrich_the_log_rows_without_adding_any(parsed: dict):
    logs = all_logs(parsed)
    assert not any(log.attributes.get("source") == "events.db" for log in logs)
    assert all("event_time" in log.attributes for log in logs)
    first = parsed[ORDERS_QUERY].logs[0]
    assert first.attributes["event_time"] == "2026-07-16T09:14:03.118637754Z"
    assert first.time == datetime(2026, 7, 16, 9, 14, 3, 118637, tzinfo=UTC)
    assert first.attributes["created_at"] == "2026-07-16T09:14:03Z"
    with_data = [log for log in logs if "event_data" in log.attributes]
    assert Counter(log.message for log in with_data) == {
        "step.input_recorded": 10,
        "step.output_recorded": 10,
    }
    price = next(
        log
        for log in parsed[EXPLICIT].logs
        if log.message == "step.input_recorded" and "price-items" in str(log.fields)
    )
    assert price.attributes["event_data"]["input"] == "[the whole value is the step's input]"
    step = next(s for s in parsed[EXPLICIT].steps if s.key == price.step_key)
    assert isinstance(step.input, dict)  # whole, not cut: on the step, once


def test_an_event_without_its_log_rows_becomes_a_log_entry(copies: Path):
    # The step.completed pair of parse-request is missing from workflow.db (ids 5 and 6).
    execute(copies, "DELETE FROM execution_logs WHERE id IN (5, 6)")
    logs = collect(copies)[ORDERS_QUERY].logs
    assert len(logs) == 43
    added = [log for log in logs if log.attributes.get("source") == "events.db"]
    assert [(log.seq, log.message, log.level) for log in added] == [(5, "step.completed", "event")]
    assert logs[3].attributes["log_id"] == 4 and logs[5].attributes["log_id"] == 7
    assert added[0].step_key == logs[3].step_key
    assert added[0].fields == {"elapsed": "98.245µs", "step_name": "parse-request"}


def test_an_event_type_never_logged_is_added_in_order(copies: Path):
    execute(
        copies.with_name("events.db"),
        "INSERT INTO execution_events VALUES ('x1', '5a702cfa-93ea-4c4e-98f3-3418f3d4e711', "
        "23, 'conditional.routed', '{\"step_name\":\"respond\"}', '2026-07-16T09:14:03.5Z')",
    )
    logs = collect(copies)[ORDERS_QUERY].logs
    assert len(logs) == 45
    assert logs[-1].message == "conditional.routed"
    assert logs[-1].attributes["source"] == "events.db"


def test_without_events_db(main: Path, tmp_path: Path):
    alone = tmp_path / "workflow.db"
    shutil.copyfile(main, alone)
    assert workflow.companion_paths(alone) == []
    runs = collect(alone)
    assert len(all_logs(runs)) == 259
    assert not any("event_time" in log.attributes for log in all_logs(runs))
    assert runs[EXPLICIT].started_at == datetime(2026, 7, 16, 9, 15, 27, tzinfo=UTC)
    assert runs[EXPLICIT].name == "orders-commands:orders"
    steps = {s.name: s for s in runs[NOTIFY].steps}
    assert steps["send-sms"].status == Status.SKIPPED  # resolved from the log rows
    assert steps["parse-request"].duration_ms == pytest.approx(0.112505)


def test_steps_sharing_a_name_take_the_logs_of_their_own_run(copies: Path):
    rename = "replace({}, 'check-scope', 'parse-request')"
    execute(
        copies,
        f"UPDATE execution_steps SET step_name = 'parse-request', step_type = 'parse-request' "
        f"WHERE execution_id = '{ORDERS_QUERY}' AND step_name = 'check-scope'",
        f"UPDATE execution_logs SET module_name = 'parse-request', "
        f"fields = {rename.format('fields')}, message = {rename.format('message')} "
        f"WHERE execution_id = '{ORDERS_QUERY}' AND module_name = 'check-scope'",
    )
    execute(
        copies.with_name("events.db"),
        f"UPDATE execution_events SET event_data = {rename.format('event_data')} "
        f"WHERE execution_id = '{ORDERS_QUERY}'",
    )
    run = collect(copies)[ORDERS_QUERY]
    first, second = (s.key for s in run.steps[:2])
    by_id = {log.attributes["log_id"]: log.step_key for log in run.logs}
    assert [by_id[i] for i in range(3, 11)] == [first] * 4 + [second] * 4
    assert run.steps[1].started_at > run.steps[0].started_at  # each took its own events


# --- broken or partial databases -----------------------------------------------------------------


def test_missing_table_or_required_column(copies: Path, tmp_path: Path):
    no_status = tmp_path / "other" / "workflow.db"
    no_status.parent.mkdir()
    shutil.copyfile(copies, no_status)
    drop_column(no_status, "execution_steps", "status")
    with pytest.raises(ParseError, match='table "execution_steps" has no column "status"'):
        collect(no_status)
    execute(copies, "DROP TABLE execution_logs")
    with pytest.raises(ParseError, match='no table "execution_logs"'):
        collect(copies)


def test_missing_optional_columns(copies: Path):
    drop_column(copies, "workflow_executions", "metadata")
    drop_column(copies, "execution_logs", "module_name")
    runs = collect(copies)
    assert len(real_steps(runs)) == 54 and len(all_logs(runs)) == 259
    assert runs[EXPLICIT].attributes["metadata"] is None
    sms = next(log for log in runs[NOTIFY].logs if log.message == "Step started: send-sms")
    assert sms.step_key == "70536e9b-8742-4ed2-b099-44e2f5b5b934"  # from fields.step_name


def test_unusable_events_db_only_costs_the_events(copies: Path):
    drop_column(copies.with_name("events.db"), "execution_events", "event_type")
    runs = collect(copies)
    assert len(runs) == 7 and len(all_logs(runs)) == 259
    assert not any("event_time" in log.attributes for log in all_logs(runs))
    assert "has no column" in runs[EXPLICIT].attributes["events_error"]


def test_unreadable_events_db_is_no_companion(copies: Path):
    copies.with_name("events.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    assert workflow.companion_paths(copies) == []
    assert len(collect(copies)) == 7


# --- fingerprints --------------------------------------------------------------------------------


def test_fingerprints_are_stable(parsed: dict, main: Path):
    assert {k: r.fingerprint for k, r in parsed.items()} == prints(main)
    assert len({r.fingerprint for r in parsed.values()}) == 7


def test_fingerprint_changes_only_for_the_modified_execution(copies: Path):
    before = prints(copies)
    execute(
        copies,
        "INSERT INTO execution_logs (workflow_id, execution_id, level, message, module_name, "
        f"fields, created_at) VALUES ('w', '{RUNNING}', 'info', 'Step completed: aggregate-sales "
        "(2ms)', 'aggregate-sales', '{}', '2026-07-16T09:24:59Z')",
    )
    after_log = prints(copies)
    assert [k for k in before if before[k] != after_log[k]] == [RUNNING]
    execute(
        copies,
        f"UPDATE execution_steps SET duration_ms = 12 WHERE execution_id = '{LOGIN}' "
        "AND step_name = 'load-user'",
    )
    after_step = prints(copies)
    assert [k for k in before if after_log[k] != after_step[k]] == [LOGIN]
    execute(
        copies.with_name("events.db"),
        f"DELETE FROM execution_events WHERE execution_id = '{NOTIFY}' AND sequence_num = 19",
    )
    after_event = prints(copies)
    assert [k for k in before if after_step[k] != after_event[k]] == [NOTIFY]


# --- helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("152.341µs", 0.152341),
        ("1.234567ms", 1.234567),
        ("2.5s", 2500),
        ("1m30.000412s", 90000.412),
        ("1h2m", 3720000),
        ("0s", 0),
        ("12ns", 0.000012),
        ("", None),
        ("soon", None),
        ("5sx", None),
    ],
)
def test_go_duration(text, expected):
    assert go_duration_ms(text) == (pytest.approx(expected) if expected is not None else None)


def test_redaction_mirrors_the_server():
    data = {
        "password": "p",
        "nested": {"api_key": "k", "token_display": "shown", "credentials_ref": "mod"},
        "list": [{"bearer_token_ref": "t"}],
        "headers": {"Authorization": "Bearer x", "Cookie": "s=1", "X-Api-Key": "k"},
        "raw_body": "{}",
        "plain": 1,
    }
    assert redact(data) == {
        "password": "[REDACTED]",
        "nested": {"api_key": "[REDACTED]", "token_display": "shown", "credentials_ref": "mod"},
        "list": [{"bearer_token_ref": "[REDACTED]"}],
        "headers": {
            "Authorization": "[REDACTED]",
            "Cookie": "[REDACTED]",
            "X-Api-Key": "[REDACTED]",
        },
        "raw_body": "[REDACTED]",
        "plain": 1,
    }
