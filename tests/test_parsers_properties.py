"""Property-based tests of every parser (hypothesis); no database.

For arbitrary bytes, arbitrary JSON values, JSON and SQLite shaped like each
format (its field names, with values plausible or not), and real samples with
random byte flips, deletions and insertions: `sniff` returns a bool or raises
ParseError, and `parse` either raises ParseError or yields well-formed records
(statuses among `Status.ALL`, step keys unique per run, every parent yielded
before its children, aware datetimes, finite durations); never any other
exception, never a hang.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from tests.corpus import trace_samples
from traces.ingest import FORMATS
from traces.ingest.records import (
    CallRecord,
    LinkRecord,
    LogRecord,
    ParseError,
    RunRecord,
    Status,
    StepRecord,
)
from traces.ingest.sqlite_layout import SQLITE_MAGIC

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SECONDS = 10  # per parse; the largest sample takes a tenth of a second
# Names each format's files are written under (greentic refuses `.tmp`, duckflux
# decides by content, the workflow parser looks for an events.db beside).
NAMES = {
    "duckflux": ("3f1d4b52-0000-4000-8000-000000000000.json", "run.txt", "run.sqlite"),
    "greentic": ("trace.json",),
    "traceos": ("dump.jsonl", "dump.json"),
    "runs": ("runs.sqlite",),
    "workflow": ("workflow.db",),
    "otlp": ("spans.jsonl", "spans.json"),
}
# TRACER_PROPERTY_SCALE=10 runs ten times the examples (a deeper search, on demand).
SCALE = int(os.environ.get("TRACER_PROPERTY_SCALE", "1"))
SETTINGS = settings(
    max_examples=100 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SAMPLES_BY_FORMAT = {
    name: [sample.path for sample in trace_samples(SAMPLES) if sample.format == name]
    for name in FORMATS
}


class Hang(AssertionError):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def expire(signum, frame):
        raise Hang(f"parse still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- the properties -------------------------------------------------------------------------


def check_file(module: ModuleType, path: Path) -> list[RunRecord]:
    """Sniff and parse `path` with `module`, checking every record on the way.
    Returns the runs (empty when the parser refused the file with ParseError)."""
    head = path.read_bytes()[:65536]
    with deadline(SECONDS):
        try:
            sniffed = module.sniff(path, head)
            assert isinstance(sniffed, bool)
            note(f"sniff: {sniffed}")
        except ParseError as exc:
            assert str(exc).strip(), "a ParseError without a message"
            note("sniff: ParseError")
        runs: list[RunRecord] = []
        try:
            # A run's steps and friends are read while iterating (as the store does).
            for run in module.parse(path):
                check_run(module, run)
                runs.append(run)
        except ParseError as exc:
            assert str(exc).strip(), "a ParseError without a message"
            note("parse: ParseError")
            return []
    note(f"parse: {min(len(runs), 2)}+ runs" if runs else "parse: no runs")
    return runs


def note(text: str) -> None:
    """What happened, for `--hypothesis-show-statistics` (outside a hypothesis test: nothing)."""
    with contextlib.suppress(InvalidArgument):
        event(text)


def check_run(module: ModuleType, run: RunRecord) -> None:
    assert isinstance(run, RunRecord)
    assert run.format == module.NAME
    assert isinstance(run.external_id, str)
    assert run.status in Status.ALL, run.status
    check_times(run, "started_at", "finished_at", "source_updated_at")
    check_duration(run.duration_ms)
    keys: set[str] = set()
    for step in run.steps:
        assert isinstance(step, StepRecord)
        assert isinstance(step.key, str)
        assert step.key not in keys, f"step key {step.key!r} twice in run {run.external_id!r}"
        assert step.parent_key is None or step.parent_key in keys, (
            f"step {step.key!r}: parent {step.parent_key!r} not yielded before it"
        )
        keys.add(step.key)
        assert step.status in Status.ALL, step.status
        check_times(step, "started_at", "finished_at")
        check_duration(step.duration_ms)
    for call in run.calls:
        assert isinstance(call, CallRecord)
        assert call.status in Status.ALL, call.status
        check_times(call, "started_at")
        check_duration(call.duration_ms)
    for link in run.links:
        assert isinstance(link, LinkRecord)
        check_times(link, "created_at")
    for log in run.logs:
        assert isinstance(log, LogRecord)
        assert isinstance(log.seq, int)
        check_times(log, "time")


def check_times(record: Any, *names: str) -> None:
    for name in names:
        value = getattr(record, name)
        assert value is None or (isinstance(value, datetime) and value.tzinfo is not None), (
            f"{type(record).__name__}.{name} = {value!r}"
        )


def check_duration(value: Any) -> None:
    assert value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ), f"duration {value!r}"


def check_bytes(module: ModuleType, data: bytes, name: str) -> list[RunRecord]:
    with tempfile.TemporaryDirectory(prefix="tracer-property-") as directory:
        path = Path(directory) / name
        path.write_bytes(data)
        return check_file(module, path)


# --- strategies -----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    # NaN and Infinity make json.dumps write invalid JSON: here in number fields only.
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)


def either(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a plausible value for the field, sometimes any JSON value."""
    return st.one_of(*[plausible] * 7, json_values)


def shaped(
    fields: dict[str, st.SearchStrategy], required: tuple[str, ...] = ()
) -> st.SearchStrategy:
    """Objects with the `required` fields (usually), some of the others, each
    plausible or not, and maybe keys the format does not have."""
    always = {name: either(fields[name]) for name in required}
    sometimes = {name: either(value) for name, value in fields.items() if name not in required}
    objects = st.fixed_dictionaries(always, optional=sometimes)
    extra = st.dictionaries(st.text(max_size=6), json_scalars, max_size=2)
    dropped = st.sets(st.sampled_from(required), max_size=1) if required else st.just(set())
    return st.tuples(objects, extra, dropped, st.integers(0, 9)).map(
        lambda t: {
            **t[1],
            **{k: v for k, v in t[0].items() if t[3] or k not in t[2]},
        }
    )


good_times = st.sampled_from(
    ["2026-11-21T19:19:10.877Z", "2026-11-21T19:19:10.877000123Z", "2026-11-21T19:19:11Z"]
) | st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat())
bad_times = st.sampled_from(
    [
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+05:00",
        "99999-01-01T00:00:00Z",
        "not a date",
        "²",
        "",
    ]
)
iso_times = st.one_of(good_times, good_times, good_times, bad_times)
epoch_ms = st.sampled_from([1795288829060, 0, -1, 253402300800000, -62135596800001]) | st.floats()
ids = st.sampled_from(["a", "b", "c", "1", "tr_1", "compensation", ""])
numbers = st.integers(min_value=-(2**70), max_value=2**70) | st.floats()

duckflux_step = shaped(
    {
        "seq": st.integers(min_value=-2, max_value=8),
        "name": st.text(max_size=8),
        "type": st.sampled_from(["exec", "loop", "parallel", "if", "set", "workflow"]),
        "startedAt": iso_times,
        "finishedAt": iso_times,
        "duration": numbers,
        "status": st.sampled_from(["success", "failure", "skipped"]),
        "input": json_values,
        "output": json_values,
        "error": st.text(max_size=10),
        "retries": st.integers(min_value=-1, max_value=3),
        "loopIndex": st.integers(min_value=-1, max_value=3),
    },
    required=("seq", "status", "type", "startedAt"),
)
duckflux_documents = st.fixed_dictionaries(
    {
        "execution": either(
            shaped(
                {
                    "id": ids,
                    "workflowId": st.text(max_size=8),
                    "workflowName": st.text(max_size=8),
                    "workflowVersion": st.text(max_size=4) | st.integers(),
                    "startedAt": iso_times,
                    "finishedAt": iso_times,
                    "duration": numbers,
                    "status": st.sampled_from(["success", "failure", "running"]),
                    "inputs": json_values,
                    "output": json_values,
                },
                required=("id", "status", "startedAt"),
            )
        ),
        "steps": either(st.lists(duckflux_step, max_size=8)),
    }
)


def _renumbered(document: dict, order: str) -> dict:
    """Unique seqs (in completion or reverse order) unless `order` is 'as drawn'."""
    steps = document["steps"]
    if order != "as drawn" and isinstance(steps, list):
        for index, step in enumerate(steps):
            if isinstance(step, dict):
                step["seq"] = index + 1 if order == "forward" else len(steps) - index
    return document


duckflux_documents = st.tuples(
    duckflux_documents, st.sampled_from(["forward", "backward", "as drawn"])
).map(lambda drawn: _renumbered(*drawn))
greentic_step = shaped(
    {
        "node_id": st.text(max_size=8),
        "component_id": st.text(max_size=8),
        "operation": st.text(max_size=8),
        "input_hash": st.fixed_dictionaries({"algorithm": st.just("blake3"), "value": ids}),
        "output_hash": st.fixed_dictionaries({"algorithm": st.just("blake3"), "value": ids}),
        "invocation_json": st.fixed_dictionaries({"payload": json_values}),
        "duration_ms": st.integers(min_value=-1, max_value=2**65),
        "validation_issues": st.lists(
            st.fixed_dictionaries({"code": ids, "path": ids, "message": st.text(max_size=8)}),
            max_size=3,
        ),
        "error": st.fixed_dictionaries(
            {"code": st.sampled_from(["node_error", "flow_error"]), "message": st.text()},
            optional={"details": json_values},
        ),
    },
    required=("node_id", "duration_ms", "component_id"),
)
greentic_documents = st.fixed_dictionaries(
    {
        "trace_version": either(st.just(1)),
        "flow": either(
            shaped({"id": st.text(max_size=8), "version": st.text(max_size=4)}, ("id",))
        ),
    },
    optional={
        "steps": either(st.lists(greentic_step, max_size=22)),
        "pack": either(shaped({"pack_ref": st.text(max_size=8)})),
        "runner_version": json_values,
    },
)
traceos_records = st.lists(
    shaped(
        {
            "type": st.sampled_from(["env", "step", "banana"]),
            "trace_id": st.sampled_from(["tr_1", "tr_2", ""]),
            "env_id": st.sampled_from(["env_1", "env_2"]),
            "ts": epoch_ms,
            "source": st.text(max_size=6),
            "payload": json_values,
            "step_id": st.integers(min_value=-1, max_value=12) | st.sampled_from([2**70, 1.0]),
            "at": epoch_ms,
            "node": st.sampled_from(["a", "b", "c"]),
            "status": st.sampled_from(["enter", "exit", "error", "paused"]),
            "meta": json_values,
        },
        required=("type", "trace_id", "step_id", "at", "node", "status", "env_id"),
    ),
    max_size=25,
)


def as_json_lines(values: list) -> bytes:
    return b"".join(json.dumps(value).encode() + b"\n" for value in values)


def mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` with up to eight random byte flips, deletions and insertions."""
    edit = st.tuples(
        st.sampled_from(["flip", "delete", "insert"]),
        st.floats(min_value=0, max_value=1),
        st.binary(min_size=1, max_size=8),
    )

    def apply(edits: list[tuple[str, float, bytes]]) -> bytes:
        out = bytearray(data)
        for operation, where, payload in edits:
            index = min(int(where * len(out)), max(len(out) - 1, 0))
            if operation == "flip" and out:
                out[index] ^= payload[0] or 0xFF
            elif operation == "delete":
                del out[index : index + len(payload)]
            else:
                out[index:index] = payload
        return bytes(out)

    return st.lists(edit, min_size=1, max_size=8).map(apply)


# --- SQLite shaped like each format ---------------------------------------------------------

SQL_VALUES = (
    st.none()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=8)
)
SQL_IDS = st.sampled_from(["a", "b", "c", 1, "1", "compensation", None, ""])
SQL_TIMES = st.sampled_from(
    ["2026-07-16T09:15:27Z", "2026-07-16T09:24:58.390216572Z", "9999-12-31T23:59:59-05:00",
     "99999-01-01T00:00:00Z", "not a date", 1795288829060, 1.0e20, -1, "1795288829"]
)  # fmt: skip
SQL_JSON = json_values.map(json.dumps) | st.just("{") | st.just('"x"...[truncated]')
SQL_STATUSES = st.sampled_from(
    ["pending", "running", "completed", "failed", "skipped", "success", "error", "???"]
)


def column_values(column: str) -> st.SearchStrategy:
    if column == "id" or column.endswith(("_id", "_step_id")):
        plausible = SQL_IDS
    elif column.endswith("_at") or column == "ts":
        plausible = SQL_TIMES
    elif column == "status":
        plausible = SQL_STATUSES
    elif column.endswith(("_data", "input", "output", "inputs", "fields", "metadata", "context")):
        plausible = SQL_JSON
    elif (
        column.endswith(("_ms", "_num", "seq", "index", "attempt", "retries")) or "items" in column
    ):
        plausible = st.integers(min_value=-2, max_value=5) | st.floats()
    else:
        plausible = st.text(max_size=8)
    return st.one_of(plausible, plausible, SQL_VALUES)


LAYOUTS = {
    "runs": {
        "runs": "id run_type trigger actor_type actor_id status current_step started_at "
        "completed_at duration_ms input output error created_at updated_at",
        "steps": "id run_id parent_step_id step_index actor_type step_type status entity_type "
        "entity_id input output items_total items_processed attempt retry_of error "
        "started_at completed_at duration_ms created_at updated_at",
        "calls": "id step_id tool operation status input output error attempt duration_ms "
        "metadata created_at",
        "step_links": "id step_id link_type entity_type entity_id external_id created_at",
    },
    "workflow": {
        "workflow_executions": "id workflow_id trigger_type trigger_data status output_data "
        "error_message triggered_by started_at completed_at duration_ms metadata",
        "execution_steps": "id execution_id step_name step_type input_data output_data status "
        "error_message started_at completed_at duration_ms sequence_num metadata",
        "execution_logs": "id workflow_id execution_id level message module_name fields created_at",
        "execution_events": "id execution_id sequence_num event_type event_data created_at",
    },
    "duckflux": {
        "executions": "id workflow_id workflow_name workflow_version started_at finished_at "
        "duration_ms status inputs output",
        "steps": "id execution_id seq name type started_at finished_at duration_ms status "
        "input output error retries loop_index",
    },
}


def sqlite_tables(layout: dict[str, str]) -> st.SearchStrategy[dict[str, list[tuple]]]:
    """Rows for each table of `layout`: no types, no keys, ids from a small pool
    (so parents, cycles, orphans and duplicates come up)."""
    return st.fixed_dictionaries(
        {
            table: st.lists(
                st.tuples(*(column_values(column) for column in columns.split())), max_size=6
            )
            for table, columns in layout.items()
        }
    )


def write_sqlite(path: Path, layout: dict[str, str], rows: dict[str, list[tuple]]) -> None:
    conn = sqlite3.connect(path)
    try:
        for table, columns in layout.items():
            names = columns.split()
            conn.execute(f"CREATE TABLE {table} ({', '.join(names)})")
            marks = ", ".join("?" * len(names))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows[table])
        conn.commit()
    finally:
        conn.close()


# --- the tests ------------------------------------------------------------------------------

MODULES = list(FORMATS.values())


@pytest.mark.parametrize("module", MODULES, ids=[m.NAME for m in MODULES])
@SETTINGS
@given(data=st.binary(max_size=3000) | st.binary(max_size=200).map(SQLITE_MAGIC.__add__))
def test_arbitrary_bytes(module, data):
    for name in NAMES[module.NAME]:
        check_bytes(module, data, name)


@pytest.mark.parametrize("module", MODULES, ids=[m.NAME for m in MODULES])
@settings(SETTINGS, max_examples=60 * SCALE)
@given(value=json_values)
def test_arbitrary_json(module, value):
    check_bytes(module, json.dumps(value).encode(), NAMES[module.NAME][0])
    if isinstance(value, list):
        check_bytes(module, as_json_lines(value), NAMES[module.NAME][0])


@settings(SETTINGS, max_examples=150 * SCALE)
@given(document=duckflux_documents)
def test_duckflux_shaped_json(document):
    for name in ("3f1d4b52-0000-4000-8000-000000000000.json", "x.json"):
        check_bytes(FORMATS["duckflux"], json.dumps(document, indent=2).encode(), name)


@settings(SETTINGS, max_examples=150 * SCALE)
@given(document=greentic_documents)
def test_greentic_shaped_json(document):
    check_bytes(FORMATS["greentic"], json.dumps(document, indent=2).encode(), "trace.json")


@settings(SETTINGS, max_examples=150 * SCALE)
@given(records=traceos_records, as_array=st.booleans())
def test_traceos_shaped_records(records, as_array):
    data = json.dumps(records, indent=2).encode() if as_array else as_json_lines(records)
    check_bytes(FORMATS["traceos"], data, "dump.json" if as_array else "dump.jsonl")


@pytest.mark.parametrize("fmt", ["runs", "workflow", "duckflux"])
@settings(SETTINGS, max_examples=60 * SCALE)
@given(data=st.data())
def test_sqlite_shaped_like_the_format(fmt, data):
    layout = LAYOUTS[fmt]
    rows = data.draw(sqlite_tables(layout))
    name = NAMES[fmt][-1]
    with tempfile.TemporaryDirectory(prefix="tracer-property-") as directory:
        path = Path(directory) / name
        write_sqlite(path, layout, rows)
        check_file(FORMATS[fmt], path)


@pytest.mark.parametrize("module", MODULES, ids=[m.NAME for m in MODULES])
@settings(SETTINGS, max_examples=60 * SCALE)
@given(data=st.data())
def test_mutated_samples(module, data):
    sample = data.draw(st.sampled_from(SAMPLES_BY_FORMAT[module.NAME]))
    mutated = data.draw(mutations(sample.read_bytes()))
    with tempfile.TemporaryDirectory(prefix="tracer-property-") as directory:
        path = Path(directory) / sample.name
        path.write_bytes(mutated)
        check_file(module, path)


def test_the_samples_pass_the_checks():
    """The checks themselves accept every real sample (and see its runs)."""
    for name, paths in SAMPLES_BY_FORMAT.items():
        for path in paths:
            runs = check_file(FORMATS[name], path)
            assert runs or path.name == "events.db", path
