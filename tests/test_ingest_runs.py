import hashlib
import shutil
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.generate_runs_db import generate_runs_db
from traces.ingest import detect
from traces.ingest import runs as runs_format
from traces.ingest.common import read_head
from traces.ingest.loader import ingest_paths
from traces.ingest.records import ParseError, Status
from traces.models import Step

FIRST_SYNC = "01KJPJ3KR08985FSGD7GGHMB1Y"
CHAT = "01KJPK0Y24E15V42AP2150NZTY"
FAILED_VIEW = "01KJPQSN2T9S700AG4X1PGYZF0"
RUNNING_SYNC = "01KJPTJDDPK4VDKRQZTAQGA3QS"
STANDALONE = "01KJPT5GP21Q05KK2SYAKZN9W6"
PROCESS_CHARGES = "01KJPJ3Q1JR9Q2VTNRTF33QMPZ"


def collect(path: Path) -> dict:
    """Every run by external id, children read while iterating (as the store does)."""
    runs = {}
    for run in runs_format.parse(path):
        run.steps, run.calls, run.links = list(run.steps), list(run.calls), list(run.links)
        runs[run.external_id] = run
    return runs


def all_of(runs: dict, name: str) -> list:
    return [item for run in runs.values() for item in getattr(run, name)]


@pytest.fixture
def sample(samples: Path) -> Path:
    return samples / "runs" / "runs.sqlite"


@pytest.fixture
def copy(sample: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs.sqlite"
    shutil.copyfile(sample, target)
    return target


def execute(path: Path, *statements: str, params=()) -> None:
    conn = sqlite3.connect(path)
    try:
        for statement in statements:
            conn.execute(statement, params)
        conn.commit()
    finally:
        conn.close()


def rebuild(path: Path, table: str, *, drop=(), add: dict | None = None, rename=None) -> None:
    """Recreate `table` without the `drop` columns, with `add` columns (name: value)."""
    conn = sqlite3.connect(path)
    try:
        columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
        kept = [c for c in columns if c not in drop]
        added = add or {}
        new_name = rename or table
        conn.execute(f'ALTER TABLE "{table}" RENAME TO old_table')
        names = ", ".join([*(f'"{c}"' for c in kept), *(f'"{c}"' for c in added)])
        conn.execute(f'CREATE TABLE "{new_name}" ({names})')
        values = ", ".join([*(f'"{c}"' for c in kept), *("?" for _ in added)])
        conn.execute(
            f'INSERT INTO "{new_name}" SELECT {values} FROM old_table', list(added.values())
        )
        conn.execute("DROP TABLE old_table")
        conn.commit()
    finally:
        conn.close()


# --- recognising ------------------------------------------------------------------------------


def test_sniff_only_the_runs_database_under_samples(samples: Path):
    claimed = [
        path.relative_to(samples).as_posix()
        for path in sorted(samples.rglob("*"))
        if path.is_file() and runs_format.sniff(path, read_head(path))
    ]
    assert claimed == ["runs/runs.sqlite"]


def test_detect_picks_runs(sample: Path):
    assert detect(sample) is runs_format


def test_sniff_rejects_an_empty_database_and_a_text_file(tmp_path: Path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("PRAGMA user_version = 1").connection.close()
    assert read_head(empty).startswith(b"SQLite format 3\x00")
    assert runs_format.sniff(empty, read_head(empty)) is False
    with pytest.raises(ParseError, match='no table "runs"'):
        collect(empty)
    text = tmp_path / "notes.db"
    text.write_text("runs and steps, but not a database\n")
    assert runs_format.sniff(text, read_head(text)) is False


def test_sniff_needs_the_step_tree_columns(copy: Path):
    rebuild(copy, "steps", drop=("parent_step_id",))
    assert runs_format.sniff(copy, read_head(copy)) is False


# --- the sample -------------------------------------------------------------------------------


def test_runs_and_their_statuses(sample: Path):
    runs = collect(sample)
    standalone = [r for r in runs.values() if r.attributes.get("standalone")]
    real = [r for r in runs.values() if not r.attributes.get("standalone")]
    assert len(real) == 7 and len(standalone) == 1
    assert Counter(r.raw_status for r in real) == {
        "completed": 3,
        "failed": 2,
        "pending": 1,
        "running": 1,
    }
    assert Counter(r.status for r in real) == {
        Status.SUCCEEDED: 3,
        Status.FAILED: 2,
        Status.PENDING: 1,
        Status.RUNNING: 1,
    }
    assert all(r.origin == str(sample.resolve()) and r.format == "runs" for r in runs.values())
    assert all(r.completeness is None for r in runs.values())


def test_steps_calls_links_counts(sample: Path):
    runs = collect(sample)
    steps, calls, links = all_of(runs, "steps"), all_of(runs, "calls"), all_of(runs, "links")
    assert len(steps) == 31
    assert Counter(s.raw_status for s in steps) == {
        "completed": 22,
        "failed": 4,
        "skipped": 3,
        "running": 2,
    }
    assert Counter(s.status for s in steps)[Status.SUCCEEDED] == 22
    assert sum(1 for s in steps if s.parent_key is not None) == 11
    assert len(runs[STANDALONE].steps) == 1
    assert Counter(c.raw_status for c in calls) == {"success": 25, "error": 7, "running": 1}
    assert Counter(c.status for c in calls) == {
        Status.SUCCEEDED: 25,
        Status.FAILED: 7,
        Status.RUNNING: 1,
    }
    assert Counter((link.link_type, link.entity_type) for link in links) == {
        ("output", "transaction"): 27,
        ("input", "stripe_page"): 9,
        ("output", "table"): 1,
    }


def test_run_fields(sample: Path):
    runs = collect(sample)
    first = runs[FIRST_SYNC]
    assert (first.name, first.type, first.trigger, first.actor) == (
        "sync_stripe",
        "sync_stripe",
        "cron",
        "system",
    )
    assert first.started_at == datetime(2026, 3, 2, 6, 0, 1, 111000, tzinfo=UTC)
    assert first.finished_at == datetime(2026, 3, 2, 6, 1, 0, 836000, tzinfo=UTC)
    assert first.duration_ms == 59725
    assert first.input == {"since": "2026-03-02T05:45:00.000Z", "account": "acct_1NeR38chkXyh"}
    assert first.source_updated_at == first.finished_at
    assert first.attributes == {
        "created_at": "2026-03-02T06:00:00.000Z",
        "updated_at": "2026-03-02T06:01:00.836Z",
        "actor_type": "system",
        "actor_id": None,
    }
    assert runs[CHAT].actor == "user:usr_oteqpzVg"
    assert runs[RUNNING_SYNC].progress_label == "upsert_batch"
    assert runs[RUNNING_SYNC].finished_at is None and runs[RUNNING_SYNC].duration_ms is None
    assert runs[FAILED_VIEW].error.startswith("build_view: canceling statement")


def test_output_counters(sample: Path):
    runs = collect(sample)
    assert runs[FIRST_SYNC].output_counters == {
        "fetched": 227,
        "inserted": 158,
        "updated": 40,
        "failed": 2,
    }
    # finishRun's output replaced the counters: a nested object is no counter.
    assert runs[CHAT].output == {"result": {"turns": 3, "total_tokens": 5372}}
    assert runs[CHAT].output_counters == {}


def test_progress_counters_of_process_charges(sample: Path):
    runs = collect(sample)
    step = next(s for s in runs[FIRST_SYNC].steps if s.key == PROCESS_CHARGES)
    assert (step.name, step.type) == ("process_charges", "process_charges")
    assert step.status == Status.SUCCEEDED
    assert (step.items_total, step.items_processed, step.items_succeeded, step.items_failed) == (
        200,
        200,
        198,
        2,
    )
    assert (step.entity_type, step.entity_id, step.max_retries) == ("account", "acc_main", 3)
    running = next(s for s in runs[RUNNING_SYNC].steps if s.name == "process_charges")
    assert (running.status, running.items_processed, running.items_total) == ("running", 125, 150)


def test_retries(sample: Path):
    runs = collect(sample)
    retried = next(c for c in runs[FIRST_SYNC].calls if c.attempt == 2)
    assert retried.retry_of == "01KJPJ3N286MEKY3YDPD1AR3ZH"
    assert retried.status == Status.SUCCEEDED
    failed_first = next(c for c in runs[FIRST_SYNC].calls if c.key == retried.retry_of)
    assert (failed_first.status, failed_first.error) == (Status.FAILED, "429 Too Many Requests")
    assert retried.started_at == datetime(2026, 3, 2, 6, 0, 2, 537000, tzinfo=UTC)
    assert retried.attributes["metadata"]["request_id"] == "req_HrTtC0CisQj5SP"
    build = [s for s in runs[FAILED_VIEW].steps if s.name == "build_view"]
    assert [(s.attempt, s.retry_of) for s in build] == [
        (1, ""),
        (2, "01KJPQSP75ZZAZZQ3AF8VKJBZC"),
    ]
    skipped = [s for s in runs[FAILED_VIEW].steps if s.status == Status.SKIPPED]
    assert [s.output for s in skipped] == [{"reason": "build_view failed"}] * 2
    assert all(s.started_at is None and s.finished_at is not None for s in skipped)


def test_parents_come_before_children_and_siblings_keep_their_order(sample: Path):
    for run in collect(sample).values():
        seen = set()
        for step in run.steps:
            assert step.parent_key is None or step.parent_key in seen
            seen.add(step.key)
    steps = collect(sample)[FIRST_SYNC].steps
    children = [s for s in steps if s.parent_key == PROCESS_CHARGES]
    assert [s.attributes["step_index"] for s in children] == [0, 1, 2, 3]
    assert [s.name for s in steps[:2]] == ["fetch_charges", "process_charges"]


def test_step_fields(sample: Path):
    steps = {s.key: s for s in all_of(collect(sample), "steps")}
    fetch = steps["01KJPJ3MTQ6J1H399TYRR7SCWR"]
    assert fetch.attributes["context"] == {"cursor": None, "page_size": 100}
    assert (fetch.input, fetch.output) == ({"limit": 300}, {"fetched": 227})
    assert fetch.duration_ms == 2267 and fetch.attempt == 1
    turn = steps["01KJPK1ZA5C39G145C97Z91MGT"]
    assert turn.input == {"user_message": "résumé des factures 2025 ✓"}
    assert turn.attributes["actor"] == "agent:agent_support"


def test_standalone_step_is_a_run_of_its_own(sample: Path):
    run = collect(sample)[STANDALONE]
    assert run.attributes == {"standalone": True}
    assert (run.name, run.type, run.status, run.raw_status) == (
        "reindex_search",
        "reindex_search",
        Status.SUCCEEDED,
        "completed",
    )
    assert run.duration_ms == 2644
    assert (run.items_total, run.items_processed) == (1000, 1000)
    assert [s.key for s in run.steps] == [STANDALONE]
    assert [c.tool for c in run.calls] == ["opensearch"]


def test_links(sample: Path):
    links = collect(sample)[FIRST_SYNC].links
    first = next(link for link in links if link.link_type == "output")
    assert first.step_key == "01KJPJ3Q1J9KVJYDR8YMZ68TZ2"
    assert (first.link_type, first.entity_type) == ("output", "transaction")
    assert first.external_id.startswith("ch_")
    assert first.created_at == datetime(2026, 3, 2, 6, 0, 3, 650000, tzinfo=UTC)


def test_parse_reads_a_snapshot_and_never_writes_the_source(sample: Path):
    before = hashlib.sha256(sample.read_bytes()).hexdigest()
    collect(sample)
    assert hashlib.sha256(sample.read_bytes()).hexdigest() == before
    assert not sample.with_name(sample.name + "-journal").exists()


def test_children_read_after_parse_finished_are_refused(sample: Path):
    runs = list(runs_format.parse(sample))
    with pytest.raises(ParseError, match="after parse"):
        list(runs[0].steps)


# --- other layouts ----------------------------------------------------------------------------


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_camel_case_copy_gives_the_same_counts(sample: Path, tmp_path: Path):
    target = tmp_path / "camel.sqlite"
    source = sqlite3.connect(sample)
    conn = sqlite3.connect(target)
    for table in ("runs", "steps", "calls", "step_links"):
        columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
        names = ", ".join(f'"{camel(c)}"' for c in columns)
        conn.execute(f'CREATE TABLE "{camel(table)}" ({names})')
        rows = source.execute(f"SELECT * FROM {table}").fetchall()
        marks = ", ".join("?" * len(columns))
        conn.executemany(f'INSERT INTO "{camel(table)}" VALUES ({marks})', rows)
    conn.commit()
    conn.close()
    source.close()
    assert runs_format.sniff(target, read_head(target))
    camel_runs, snake_runs = collect(target), collect(sample)
    assert camel_runs.keys() == snake_runs.keys()
    for name in ("steps", "calls", "links"):
        assert len(all_of(camel_runs, name)) == len(all_of(snake_runs, name))
    assert camel_runs[FIRST_SYNC].output_counters == snake_runs[FIRST_SYNC].output_counters
    assert camel_runs[FIRST_SYNC].steps == snake_runs[FIRST_SYNC].steps


def test_missing_optional_columns_and_an_extra_column(copy: Path):
    rebuild(copy, "runs", drop=("current_step", "trigger", "input"), add={"tenant": "acme"})
    rebuild(copy, "steps", drop=("items_total", "context", "max_retries", "step_index"))
    rebuild(copy, "calls", drop=("metadata", "attempt"), add={"region": "eu"})
    runs = collect(copy)
    assert len(all_of(runs, "steps")) == 31 and len(all_of(runs, "calls")) == 33
    first = runs[FIRST_SYNC]
    assert first.attributes["tenant"] == "acme"
    assert (first.trigger, first.progress_label, first.input) == ("", "", None)
    step = next(s for s in first.steps if s.key == PROCESS_CHARGES)
    assert step.items_total is None and step.items_processed == 200
    assert "context" not in step.attributes
    call = first.calls[0]
    assert call.attributes == {"region": "eu"} and call.attempt is None


def test_calls_and_step_links_may_be_missing(copy: Path):
    execute(copy, "DROP TABLE calls", "DROP TABLE step_links")
    runs = collect(copy)
    assert len(all_of(runs, "steps")) == 31
    assert all_of(runs, "calls") == [] and all_of(runs, "links") == []


def test_missing_steps_table_or_status_column(copy: Path, tmp_path: Path):
    no_status = tmp_path / "no-status.sqlite"
    shutil.copyfile(copy, no_status)
    rebuild(no_status, "steps", drop=("status",))
    with pytest.raises(ParseError, match='table "steps" has no column "status"'):
        collect(no_status)
    execute(copy, "DROP TABLE steps")
    with pytest.raises(ParseError, match='no table "steps"'):
        collect(copy)


def test_numeric_epoch_dates_non_object_json_and_plain_text(copy: Path):
    execute(
        copy,
        "UPDATE runs SET started_at = 1772431201111, completed_at = '1772431260.836', "
        f"output = '[1, 2]', input = 'not json' WHERE id = '{FIRST_SYNC}'",
    )
    run = collect(copy)[FIRST_SYNC]
    assert run.started_at == datetime(2026, 3, 2, 6, 0, 1, 111000, tzinfo=UTC)
    assert run.finished_at == datetime(2026, 3, 2, 6, 1, 0, 836000, tzinfo=UTC)
    assert (run.output, run.output_counters, run.input) == ([1, 2], {}, "not json")


def test_unreadable_time_is_kept_not_fatal(copy: Path):
    execute(copy, f"UPDATE runs SET started_at = 'soon' WHERE id = '{FIRST_SYNC}'")
    run = collect(copy)[FIRST_SYNC]
    assert run.started_at is None
    assert run.attributes["unreadable_times"] == {"started_at": "soon"}


# --- broken trees and orphans -----------------------------------------------------------------


def test_parent_cycle_does_not_hang_and_keeps_every_step(copy: Path):
    a, b = "01KJPJ3Q1J9KVJYDR8YMZ68TZ2", "01KJPJ43W57C9PM2FRY5FJSANG"
    execute(copy, f"UPDATE steps SET parent_step_id = '{b}' WHERE id = '{a}'")
    execute(copy, f"UPDATE steps SET parent_step_id = '{a}' WHERE id = '{b}'")
    execute(copy, f"UPDATE steps SET parent_step_id = id WHERE id = '{PROCESS_CHARGES}'")
    steps = collect(copy)[FIRST_SYNC].steps
    assert len(steps) == 6 and len({s.key for s in steps}) == 6
    problems = {s.key: s.attributes.get("parent_problem", "") for s in steps}
    assert problems[PROCESS_CHARGES] == "step is its own parent"
    assert sum("cycle" in problem for problem in problems.values()) == 1
    seen = set()
    for step in steps:
        assert step.parent_key is None or step.parent_key in seen
        seen.add(step.key)


def test_parent_missing_or_in_another_run_becomes_a_root(copy: Path):
    other_run_step = "01KJPK0Y24SF6157GRBXCQ85XA"
    execute(
        copy,
        "UPDATE steps SET parent_step_id = 'nope' WHERE id = '01KJPJ3Q1J9KVJYDR8YMZ68TZ2'",
        f"UPDATE steps SET parent_step_id = '{other_run_step}' "
        "WHERE id = '01KJPJ43W57C9PM2FRY5FJSANG'",
    )
    steps = {s.key: s for s in collect(copy)[FIRST_SYNC].steps}
    missing, elsewhere = steps["01KJPJ3Q1J9KVJYDR8YMZ68TZ2"], steps["01KJPJ43W57C9PM2FRY5FJSANG"]
    assert missing.parent_key is None and elsewhere.parent_key is None
    assert missing.attributes["parent_problem"] == "parent step nope does not exist"
    assert missing.attributes["parent_step_id"] == "nope"
    assert elsewhere.attributes["parent_problem"] == (
        f"parent step {other_run_step} belongs to run {CHAT}"
    )


def test_orphan_calls_and_links_are_skipped(copy: Path):
    execute(
        copy,
        "INSERT INTO calls (id, step_id, tool, operation, status, attempt, created_at) "
        "VALUES ('orphan', 'no-such-step', 'x', 'y', 'success', 1, '2026-03-02T06:00:00.000Z')",
        "INSERT INTO step_links (id, step_id, link_type, entity_type, entity_id, created_at) "
        "VALUES ('orphan', 'no-such-step', 'output', 'x', 'y', '2026-03-02T06:00:00.000Z')",
    )
    runs = collect(copy)
    assert len(all_of(runs, "calls")) == 33 and len(all_of(runs, "links")) == 37


def test_steps_of_a_deleted_run_are_kept_under_its_id(copy: Path):
    execute(copy, f"DELETE FROM runs WHERE id = '{CHAT}'")
    run = collect(copy)[CHAT]
    assert run.attributes == {"run_row_missing": True}
    assert run.status == Status.SUCCEEDED
    assert (len(run.steps), len(run.calls)) == (3, 3)


def test_corrupt_file_is_a_parse_error(copy: Path):
    data = bytearray(copy.read_bytes())
    middle = len(data) // 2
    data[middle - 8192 : middle + 8192] = b"\xa5" * 16384
    copy.write_bytes(bytes(data))
    with pytest.raises(ParseError):
        collect(copy)


# --- fingerprints ------------------------------------------------------------------------------


def test_fingerprints_are_stable_and_change_only_for_the_changed_run(copy: Path):
    first = {key: run.fingerprint for key, run in collect(copy).items()}
    again = {r.external_id: r.fingerprint for r in runs_format.parse(copy)}
    assert first == again and len(set(first.values())) == len(first)
    # The running call finishes: a call has no updated_at, its status and duration tell.
    execute(
        copy,
        "UPDATE calls SET status = 'success', duration_ms = 300 WHERE status = 'running'",
    )
    changed = {r.external_id: r.fingerprint for r in runs_format.parse(copy)}
    assert [key for key in first if first[key] != changed[key]] == [RUNNING_SYNC]


def test_fingerprint_of_a_standalone_run_follows_its_calls(copy: Path):
    before = {r.external_id: r.fingerprint for r in runs_format.parse(copy)}
    execute(copy, "UPDATE calls SET duration_ms = 1 WHERE tool = 'opensearch'")
    after = {r.external_id: r.fingerprint for r in runs_format.parse(copy)}
    assert [key for key in before if before[key] != after[key]] == [STANDALONE]


def prints(path: Path) -> dict:
    return {r.external_id: r.fingerprint for r in runs_format.parse(path)}


def changed_runs(before: dict, after: dict) -> list:
    return [key for key in before if before[key] != after[key]]


def test_without_updated_at_a_standalone_run_follows_its_rows(copy: Path):
    rebuild(copy, "steps", drop=("updated_at",))
    before = prints(copy)
    assert prints(copy) == before
    execute(copy, f"UPDATE steps SET error = 'disk full' WHERE id = '{STANDALONE}'")
    after = prints(copy)
    assert changed_runs(before, after) == [STANDALONE]
    execute(copy, "UPDATE calls SET output = '{}' WHERE tool = 'opensearch'")
    assert changed_runs(after, prints(copy)) == [STANDALONE]


def test_without_updated_at_wide_rows_and_text_that_is_not_utf8_are_hashed(copy: Path):
    wide = {f"extra_{n}": n for n in range(150)}
    rebuild(copy, "steps", drop=("updated_at",), add=wide)
    execute(copy, f"UPDATE steps SET error = CAST(x'ff41' AS TEXT) WHERE id = '{PROCESS_CHARGES}'")
    before = prints(copy)
    assert prints(copy) == before
    execute(copy, f"UPDATE steps SET extra_140 = 0 WHERE id = '{PROCESS_CHARGES}'")
    assert changed_runs(before, prints(copy)) == [FIRST_SYNC]


def test_unchanged_runs_can_be_skipped_without_reading_children(sample: Path):
    # The store skips a run by fingerprint without touching its generators.
    assert len([run.fingerprint for run in runs_format.parse(sample)]) == 8


# --- the generator ------------------------------------------------------------------------------


def test_generated_database_parses_to_its_counts(tmp_path: Path):
    path = tmp_path / "generated.sqlite"
    counts = generate_runs_db(path, runs=12, steps=400, calls=700, links=150, seed=3)
    assert counts == {"runs": 12, "steps": 400, "calls": 700, "links": 150}
    assert runs_format.sniff(path, read_head(path))
    runs = collect(path)
    assert len(runs) == 12
    steps = all_of(runs, "steps")
    assert len(steps) == 400 and len(all_of(runs, "calls")) == 700
    assert len(all_of(runs, "links")) == 150
    assert any(s.parent_key for s in steps) and any(s.items_total for s in steps)
    calls = all_of(runs, "calls")
    assert any(c.attempt and c.attempt > 1 and c.retry_of for c in calls)
    assert any(c.status == Status.FAILED for c in calls)
    assert any(r.status == Status.RUNNING for r in runs.values())
    for run in runs.values():
        seen = set()
        for step in run.steps:
            assert step.parent_key is None or step.parent_key in seen
            seen.add(step.key)


def test_generator_is_reproducible(tmp_path: Path):
    one, two = tmp_path / "one.sqlite", tmp_path / "two.sqlite"
    generate_runs_db(one, runs=3, steps=30, calls=40, seed=7)
    generate_runs_db(two, runs=3, steps=30, calls=40, seed=7)
    prints = [[r.fingerprint for r in runs_format.parse(p)] for p in (one, two)]
    assert prints[0] == prints[1]


def test_extra_columns_of_steps_and_links_are_kept_by_their_names(copy: Path):
    """Rows are read as tuples by position: a table's columns the format does not
    define still reach the attributes under their own names."""
    rebuild(copy, "steps", add={"shardKey": 3})
    rebuild(copy, "step_links", drop=("id",), add={"weight": 0.5})
    runs = collect(copy)
    step = next(s for s in runs[FIRST_SYNC].steps if s.key == PROCESS_CHARGES)
    assert step.attributes["shardKey"] == 3 and step.items_processed == 200
    links = all_of(runs, "links")
    assert links and all(link.attributes == {"weight": 0.5} for link in links)


# The stored value of each JSON text a steps row may hold, as the pages show it.
_HOSTILE_JSON = {
    "not json": "not json",
    '{"a": NaN}': '{"a": NaN}',
    '{"n": 123456789012345678901234567890}': {"n": 1.2345678901234568e29},
    '{"cut": "a\\u0000b"}': {"cut": "a\ufffdb"},
    '{"deep": ' + "[" * 300 + "]" * 300 + "}": '{"deep":' + "[" * 300 + "]" * 300 + "}",
    '{"a": 1, "a": 2}': {"a": 2},
    "[1, 2,]": "[1, 2,]",
}


@pytest.mark.django_db(transaction=True)
def test_hostile_json_text_in_a_column_is_stored_as_before(copy: Path):
    """Valid JSON text is decoded and stored as JSON, anything else as the text itself;
    a NUL is replaced, integers past 64 bits are read as numbers, JSON nested past what
    every reader can load is kept as text."""
    conn = sqlite3.connect(copy)
    ids = [row[0] for row in conn.execute("SELECT id FROM steps ORDER BY id")]
    texts = list(_HOSTILE_JSON)
    conn.executemany("UPDATE steps SET input = ? WHERE id = ?", list(zip(texts, ids, strict=False)))
    conn.commit()
    conn.close()
    report = ingest_paths([copy])
    assert not report.summary()["errors"]
    stored = dict(Step.objects.filter(key__in=ids[: len(texts)]).values_list("key", "input"))
    values = [stored[key] for key in ids[: len(texts)]]
    # PostgreSQL's jsonb gives the number back as the integer its digits spell.
    values[2] = {"n": float(values[2]["n"])}
    assert values == list(_HOSTILE_JSON.values())
