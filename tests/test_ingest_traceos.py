import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from traces.ingest import traceos
from traces.ingest.common import read_head
from traces.ingest.loader import ingest_paths
from traces.ingest.records import ParseError, Status
from traces.models import Run

FAILING_HTTP = "tr_1795288829069_ncsj99dodce"
IN_FLIGHT_CRON = "tr_1795288829082_pa6pysi0og"
NESTED_WEBHOOK = "tr_1795288829060_vovi8o84uzi"
REENTERED_CRON = "tr_1795288829069_ontnme5jzl"
QUEUE = "tr_1795288829069_oy9hwobi04"


def parse_all(path: Path) -> list:
    runs = list(traceos.parse(path))
    for run in runs:
        run.steps = list(run.steps)
        run.logs = list(run.logs)
    return runs


def by_id(runs) -> dict:
    return {run.external_id: run for run in runs}


def dump_lines(samples: Path) -> list[dict]:
    return [
        orjson.loads(line)
        for line in (samples / "traceos" / "traces.jsonl").read_bytes().splitlines()
    ]


def write_jsonl(tmp_path: Path, records: list, name: str = "dump.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(orjson.dumps(record) for record in records) + b"\n")
    return path


def env(trace_id="tr_1", ts=1795288829000, **changes) -> dict:
    record = {
        "type": "env",
        "env_id": "env_1",
        "trace_id": trace_id,
        "ts": ts,
        "source": "test",
        "payload": {},
    }
    record.update(changes)
    return record


def step(step_id, node, status, at=None, trace_id="tr_1", **changes) -> dict:
    record = {
        "type": "step",
        "trace_id": trace_id,
        "env_id": "env_1",
        "step_id": step_id,
        "at": 1795288829000 + step_id if at is None else at,
        "node": node,
        "status": status,
    }
    record.update(changes)
    return record


@pytest.fixture
def jsonl_runs(samples):
    return parse_all(samples / "traceos" / "traces.jsonl")


def test_json_and_jsonl_give_the_same_nine_runs(samples, jsonl_runs):
    array_runs = parse_all(samples / "traceos" / "traces.json")
    assert len(jsonl_runs) == len(array_runs) == 9
    assert [r.external_id for r in jsonl_runs] == [r.external_id for r in array_runs]
    assert [r.fingerprint for r in jsonl_runs] == [r.fingerprint for r in array_runs]
    assert len({r.fingerprint for r in jsonl_runs}) == 9
    assert all(run.format == "traceos" and run.origin == "" for run in jsonl_runs)


def test_record_counts(jsonl_runs):
    # 75 records: 9 env + 66 step (34 enter, 30 exit, 2 error).
    assert sum(run.completeness[0] for run in jsonl_runs) == 66
    steps = [s for run in jsonl_runs for s in run.steps]
    assert len(steps) == 34
    closers = Counter(s.attributes.get("close_step_id") is not None and s.raw_status for s in steps)
    assert closers == {"exit": 30, "error": 2, False: 2}
    assert all(not run.logs and "violations" not in run.attributes for run in jsonl_runs)


def test_run_statuses(jsonl_runs):
    statuses = Counter(run.status for run in jsonl_runs)
    assert statuses == {Status.SUCCEEDED: 6, Status.FAILED: 2, Status.RUNNING: 1}
    failed = [run for run in jsonl_runs if run.status == Status.FAILED]
    assert all(run.error and run.finished_at for run in failed)


def test_enters_without_exit(jsonl_runs):
    unclosed = [
        (run.external_id, s)
        for run in jsonl_runs
        for s in run.steps
        if "close_step_id" not in s.attributes
    ]
    assert [(trace, s.name) for trace, s in unclosed] == [
        (FAILING_HTTP, "handler"),
        (IN_FLIGHT_CRON, "upsert"),
    ]
    handler, upsert = (s for _, s in unclosed)
    assert handler.status == Status.FAILED
    assert handler.attributes["closed_by_trace_error"] is True
    assert handler.never_closed
    assert upsert.status == Status.RUNNING
    assert upsert.finished_at is None and upsert.duration_ms is None


def test_failing_http_trace(jsonl_runs):
    run = by_id(jsonl_runs)[FAILING_HTTP]
    steps = {s.key: s for s in run.steps}
    assert run.status == Status.FAILED
    assert steps["8"].name == "fetch.upstream" and steps["8"].status == Status.FAILED
    assert steps["8"].parent_key == "5"
    assert "upstream timeout after 3000ms" in steps["8"].error
    assert steps["8"].attributes["error_meta"]["code"] == "ETIMEDOUT"
    assert steps["5"].finished_at == steps["8"].finished_at == run.finished_at
    assert run.error.startswith("fetch.upstream: ")


def test_in_flight_cron_is_running(jsonl_runs):
    run = by_id(jsonl_runs)[IN_FLIGHT_CRON]
    assert run.status == Status.RUNNING
    assert run.finished_at is None and run.duration_ms is None
    assert run.source_updated_at is not None


# A day before the tests started: one value, so that each dump holds the same records.
DAY_AGO_MS = int((datetime.now(UTC) - timedelta(days=1)).timestamp() * 1000)


def in_flight_dump(folder: Path, *, written_ago: timedelta, extra=()) -> Path:
    """A dump holding a trace opened a day ago whose `handler` never exited,
    written `written_ago`."""
    records = [env(ts=DAY_AGO_MS), step(1, "handler", "enter", at=DAY_AGO_MS + 5), *extra]
    folder.mkdir(exist_ok=True)
    path = write_jsonl(folder, records)
    written = (datetime.now(UTC) - written_ago).timestamp()
    os.utime(path, (written, written))
    return path


@pytest.mark.parametrize("written_ago", [timedelta(0), timedelta(hours=1)], ids=["now", "old"])
def test_an_in_flight_trace_was_last_active_when_its_dump_was_written(tmp_path, written_ago):
    (run,) = parse_all(in_flight_dump(tmp_path, written_ago=written_ago))
    assert run.status == Status.RUNNING
    expected = datetime.now(UTC) - written_ago
    assert abs(run.source_updated_at - expected) < timedelta(seconds=5)


def test_a_finished_trace_was_last_active_at_its_last_record(tmp_path):
    path = write_jsonl(tmp_path, [env(), step(1, "a", "enter"), step(2, "a", "exit")])
    (run,) = parse_all(path)
    assert (
        run.source_updated_at == run.finished_at == datetime.fromtimestamp(1795288829.002, tz=UTC)
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("written_ago", "stale"),
    [(timedelta(0), False), (timedelta(hours=1), True)],
    ids=["now", "old"],
)
def test_an_in_flight_trace_is_stale_by_its_dumps_age(tmp_path, settings, written_ago, stale):
    settings.TRACER_STALE_AFTER = timedelta(seconds=600)
    ingest_paths([in_flight_dump(tmp_path, written_ago=written_ago)])
    assert Run.objects.get().is_stale is stale


@pytest.mark.django_db
def test_a_rewritten_dump_keeps_its_unchanged_in_flight_trace_live(tmp_path, settings):
    settings.TRACER_STALE_AFTER = timedelta(seconds=600)
    ingest_paths([in_flight_dump(tmp_path, written_ago=timedelta(hours=1))])
    run = Run.objects.get()
    assert run.is_stale
    # The process dumps again: another trace now, the first one as it was.
    other = [env(trace_id="tr_2"), step(1, "b", "enter", trace_id="tr_2")]
    path = in_flight_dump(tmp_path, written_ago=timedelta(0), extra=other)
    report = ingest_paths([path])
    assert report.files[0].runs_unchanged == [run.pk]
    run.refresh_from_db()
    assert not run.is_stale
    # An older copy of the dump read afterwards does not make it stale again.
    ingest_paths([in_flight_dump(tmp_path / "copy", written_ago=timedelta(hours=2))])
    run.refresh_from_db()
    assert not run.is_stale


def test_nested_persist_db_insert(jsonl_runs):
    run = by_id(jsonl_runs)[NESTED_WEBHOOK]
    steps = {s.name: s for s in run.steps}
    assert steps["db.insert"].parent_key == steps["persist"].key == "5"
    assert steps["persist"].parent_key is None
    assert steps["persist"].input == {"table": "invoices"}
    assert steps["persist"].output == {"ok": True}
    assert run.name == "parse"
    assert run.duration_ms == 8


def test_reentered_cron_node_gives_separate_steps(jsonl_runs):
    run = by_id(jsonl_runs)[REENTERED_CRON]
    pages = [s for s in run.steps if s.name == "fetch.page"]
    assert [s.key for s in pages] == ["1", "3"]
    assert [s.output for s in pages] == [{"count": 100}, {"count": 37}]
    assert all(s.status == Status.SUCCEEDED and s.parent_key is None for s in pages)


def test_sources(jsonl_runs):
    assert Counter(run.trigger for run in jsonl_runs) == {
        "webhook": 3,
        "http": 2,
        "cron": 2,
        "unknown": 1,
        "selftest": 1,
    }
    assert all(run.type == run.trigger for run in jsonl_runs)
    assert all(run.attributes["env_id"].startswith("env_") for run in jsonl_runs)


def test_meta_absent_and_null_are_distinguished(jsonl_runs):
    steps = {s.name: s for s in by_id(jsonl_runs)[QUEUE].steps}
    assert steps["decode"].input == "base64" and steps["decode"].output == [1, 2, 3]
    assert steps["handle"].input is None and "meta_absent" not in steps["handle"].attributes
    assert steps["handle"].output == 42
    assert steps["ack"].attributes["meta_absent"] == ["enter", "exit"]
    assert by_id(jsonl_runs)[QUEUE].input["body"]["text"] == "héllo wörld ✓ 日本語"


@pytest.mark.parametrize(
    "replay", sorted((Path(__file__).parent.parent / "samples" / "traceos").glob("replay-*.json"))
)
def test_replay_files_match_the_full_dump(jsonl_runs, replay):
    (run,) = parse_all(replay)
    full = by_id(jsonl_runs)[run.external_id]
    assert replay.stem == f"replay-{run.external_id}"
    assert run.fingerprint == full.fingerprint
    assert run.completeness == full.completeness
    assert [s.key for s in run.steps] == [s.key for s in full.steps]


def test_smaller_cumulative_dump_is_less_complete(tmp_path, samples, jsonl_runs):
    records = [r for r in dump_lines(samples) if r["trace_id"] == NESTED_WEBHOOK][:6]
    (run,) = parse_all(write_jsonl(tmp_path, records))
    full = by_id(jsonl_runs)[NESTED_WEBHOOK]
    assert run.completeness < full.completeness
    assert run.fingerprint != full.fingerprint
    assert run.status == Status.RUNNING


def test_overlapping_dumps_dedupe(tmp_path, samples, jsonl_runs):
    records = dump_lines(samples)
    (run,) = parse_all(write_jsonl(tmp_path, [r for r in records if r["trace_id"] == QUEUE] * 2))
    assert run.fingerprint == by_id(jsonl_runs)[QUEUE].fingerprint
    assert run.attributes["duplicates_dropped"] == 7
    assert not run.logs


def test_cut_last_line_is_skipped_with_a_note(tmp_path, samples):
    data = (samples / "traceos" / "traces.jsonl").read_bytes().rstrip(b"\n")
    path = tmp_path / "cut.jsonl"
    path.write_bytes(data[:-25])
    runs = parse_all(path)
    assert len(runs) == 9
    assert all("line 75" in note for run in runs for note in run.attributes["file_notes"])
    # The cut line was the selftest trace's exit: now it looks in flight.
    assert runs[-1].status == Status.RUNNING


def test_broken_middle_line_is_an_error(tmp_path, samples):
    lines = (samples / "traceos" / "traces.jsonl").read_bytes().splitlines()
    lines[4] = lines[4][:40]
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ParseError, match="line 5"):
        parse_all(path)


def test_blank_lines_and_no_trailing_newline(tmp_path, samples):
    lines = (samples / "traceos" / "traces.jsonl").read_bytes().splitlines()
    path = tmp_path / "spaced.jsonl"
    path.write_bytes(b"\n\n".join(lines) + b"\r\n")
    assert len(parse_all(path)) == 9


def test_compact_array(tmp_path, samples):
    path = tmp_path / "compact.json"
    path.write_bytes(orjson.dumps(dump_lines(samples)))
    assert traceos.sniff(path, read_head(path))
    assert len(parse_all(path)) == 9


def test_exit_without_enter_is_flagged(tmp_path):
    records = [env(), step(1, "a", "enter"), step(2, "b", "exit", meta=1), step(3, "a", "exit")]
    (run,) = parse_all(write_jsonl(tmp_path, records))
    orphan = next(s for s in run.steps if s.name == "b")
    assert orphan.attributes["without_enter"] is True
    assert orphan.parent_key == "1" and orphan.output == 1 and orphan.started_at is None
    assert run.status == Status.SUCCEEDED
    assert any("'b' exits without enter" in v for v in run.attributes["violations"])
    assert [log.level for log in run.logs] == ["warning"]
    assert run.logs[0].step_key == "2"


def test_duplicate_step_id_with_other_content_keeps_the_first(tmp_path):
    records = [env(), step(1, "a", "enter"), step(2, "a", "exit"), step(2, "a", "error")]
    (run,) = parse_all(write_jsonl(tmp_path, records))
    assert run.status == Status.SUCCEEDED
    assert run.attributes["conflicts"][0]["dropped"]["status"] == "error"
    assert any("duplicate step_id 2" in v for v in run.attributes["violations"])
    assert run.completeness == (2,)


def test_gap_after_error_and_unknown_records_are_flagged(tmp_path):
    records = [
        env(),
        step(1, "a", "enter"),
        step(3, "a", "error", meta="boom"),
        step(4, "b", "enter"),
        {"type": "metric", "trace_id": "tr_1", "value": 3},
        step(5, "c", "enter", at=None) | {"at": None},
        step(6, "c", "teleport"),
        step(7, "c", "enter") | {"step_id": "7"},
    ]
    (run,) = parse_all(write_jsonl(tmp_path, records))
    violations = " | ".join(run.attributes["violations"])
    assert "expected 2, got 3" in violations
    assert "after the trace's error" in violations
    assert 'unknown type "metric"' in violations
    assert "without an integer step_id" in violations
    assert run.status == Status.FAILED
    assert run.error == "a: boom"
    assert [s.name for s in run.steps] == ["a"]
    assert run.attributes["after_error"][0]["node"] == "b"
    assert len(run.logs) == len(run.attributes["violations"])


def test_missing_fields_are_flagged(tmp_path):
    bad_step = step(2, "b", "enter")
    del bad_step["node"]
    records = [
        {"type": "env", "trace_id": "tr_1"},
        step(1, "a", "enter"),
        bad_step,
        step(3, "a", "exit"),
    ]
    (run,) = parse_all(write_jsonl(tmp_path, records))
    violations = " | ".join(run.attributes["violations"])
    assert "no 'source'" in violations and "no 'node'" in violations
    assert run.trigger == "" and run.status == Status.SUCCEEDED
    assert run.started_at == run.steps[0].started_at


def test_steps_without_env(tmp_path):
    (run,) = parse_all(write_jsonl(tmp_path, [step(1, "a", "enter"), step(2, "a", "exit")]))
    assert "no env record for this trace" in run.attributes["violations"]
    assert run.started_at is not None and run.status == Status.SUCCEEDED


def test_overlap_closes_the_node_wherever_it_is(tmp_path):
    records = [
        env(),
        step(1, "a", "enter"),
        step(2, "b", "enter"),
        step(3, "a", "exit"),
        step(4, "c", "enter"),
        step(5, "b", "exit"),
        step(6, "c", "exit"),
    ]
    (run,) = parse_all(write_jsonl(tmp_path, records))
    parents = {s.name: s.parent_key for s in run.steps}
    assert parents == {"a": None, "b": "1", "c": "2"}
    assert all(s.status == Status.SUCCEEDED for s in run.steps)
    assert not run.logs


def test_non_objects_and_records_without_trace_id_are_skipped(tmp_path):
    records = [
        env(),
        [1, 2],
        {"type": "step", "step_id": 1},
        step(1, "a", "enter"),
        step(2, "a", "exit"),
    ]
    (run,) = parse_all(write_jsonl(tmp_path, records))
    notes = run.attributes["file_notes"]
    assert any("line 2" in note and "expected an object" in note for note in notes)
    assert any("line 3" in note and "no trace_id" in note for note in notes)
    assert len(run.logs) == 2


def test_nothing_valid_is_an_error(tmp_path):
    with pytest.raises(ParseError, match="no valid traceos record"):
        parse_all(write_jsonl(tmp_path, [{"type": "env"}, [1], "x"]))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (step(1, "a", "enter", at="yesterday"), "line 2: at: expected epoch milliseconds"),
        (step(1, "a", "enter", at=1e20), "line 2: at: timestamp .* out of range"),
        (env(ts="now"), "line 1: ts: expected epoch milliseconds"),
    ],
)
def test_bad_timestamps_are_errors(tmp_path, record, message):
    records = [env(), record] if record["type"] == "step" else [record]
    with pytest.raises(ParseError, match=message):
        parse_all(write_jsonl(tmp_path, records))


@pytest.mark.parametrize(
    "content", [b"", b"\n\n", b"garbage", b'[{"type": "env"', b"\x00\xffbinary"]
)
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "dump.json"
    path.write_bytes(content)
    with pytest.raises(ParseError):
        parse_all(path)


def test_sniff_accepts_dumps(samples):
    folder = samples / "traceos"
    for name in ["traces.json", "traces.jsonl", *(p.name for p in folder.glob("replay-*.json"))]:
        path = folder / name
        assert traceos.sniff(path, read_head(path)), name


def test_sniff_rejects_every_other_sample(samples):
    dumps = {"traces.json", "traces.jsonl"}
    others = [
        path
        for path in samples.rglob("*")
        if path.is_file()
        and not (
            path.parent.name == "traceos"
            and (path.name in dumps or path.name.startswith("replay-"))
        )
    ]
    assert {"stats.json", "guard-errors.json"} <= {p.name for p in others}
    for path in others:
        assert not traceos.sniff(path, read_head(path)), path


def test_sniff_with_a_first_record_longer_than_the_head(tmp_path):
    path = write_jsonl(tmp_path, [env(payload={"blob": "x" * 100_000}), step(1, "a", "enter")])
    assert traceos.sniff(path, read_head(path))
    (run,) = parse_all(path)
    assert len(run.input["blob"]) == 100_000


def test_sniff_rejects_a_big_pretty_object(tmp_path):
    path = tmp_path / "big.json"
    record = env(payload={"blob": "x" * 100_000})
    path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    assert not traceos.sniff(path, read_head(path))


@pytest.mark.parametrize("cut", [1, 200, 5000, -2])
def test_cut_array_is_an_error_with_a_location(tmp_path, samples, cut):
    path = tmp_path / "cut.json"
    path.write_bytes((samples / "traceos" / "traces.json").read_bytes()[:cut])
    with pytest.raises(ParseError, match=r"line \d+, column \d+"):
        parse_all(path)
