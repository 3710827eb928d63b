"""The duckflux parser (`traces/ingest/duckflux/`) on the samples and on files
built here, in all three encodings: names, errors, nesting, values. Each
encoding's own cases are in test_ingest_duckflux_{json,txt,sqlite}.py. No
database needed.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tests.duckflux_files import (
    DUCKFLUX,
    FLAT_FILES,
    JSON_FILES,
    LOOP_FILES,
    MANIFEST,
    PARALLEL_FILES,
    SNAPSHOTS,
    STATUSES,
    TRACE_DIRS,
    load_json,
    parents,
    parse_one,
    step,
    step_view,
    three_encodings,
    trace,
    txt_trace,
    write_json,
    write_sqlite,
)
from traces.ingest import duckflux
from traces.ingest.common import parse_iso, read_head
from traces.ingest.records import ParseError, Status

# --------------------------------------------------------------------------- samples


def test_manifest_lists_every_trace_file():
    on_disk = {str(p.relative_to(DUCKFLUX)) for d in TRACE_DIRS for p in (DUCKFLUX / d).iterdir()}
    assert on_disk == {entry["file"] for entry in MANIFEST}
    per_dir = Counter(entry["file"].split("/")[0] for entry in MANIFEST)
    assert per_dir == {"json": 7, "txt": 6, "sqlite": 6, "running-snapshot": 3}


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_sample_matches_manifest(samples, entry):
    path = samples / "duckflux" / entry["file"]
    run = parse_one(path)

    assert (run.format, run.origin) == ("duckflux", "")
    assert run.external_id == entry["execution_id"] == path.stem
    assert run.raw_status == entry["status_in_file"]
    assert run.status == STATUSES[entry["status_in_file"]]
    assert run.started_at == parse_iso(entry["started_at"])
    assert run.finished_at == parse_iso(entry["finished_at"])
    assert run.attributes["encoding"] == entry["format"]
    assert run.source_updated_at == datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    terminal = run.status in Status.TERMINAL
    assert run.completeness == (1 if terminal else 0, entry["steps"])
    assert isinstance(run.duration_ms, float) if terminal else run.duration_ms is None

    steps = run.steps
    assert len(steps) == entry["steps"]
    assert Counter(s.raw_status for s in steps) == entry["steps_by_status"]
    assert Counter(s.status for s in steps) == {
        STATUSES[word]: count for word, count in entry["steps_by_status"].items()
    }
    if "steps_with_loop_index" in entry:
        assert sum(s.loop_index is not None for s in steps) == entry["steps_with_loop_index"]
        assert sum(s.retries is not None for s in steps) == entry["steps_with_retries"]


@pytest.mark.parametrize(
    "entry",
    [e for e in MANIFEST if "workflow_id" in e],
    ids=[e["file"] for e in MANIFEST if "workflow_id" in e],
)
def test_run_names_from_json_and_sqlite(samples, entry):
    run = parse_one(samples / "duckflux" / entry["file"])
    assert run.name == run.type == entry["workflow_name"]
    assert run.attributes["workflowId"] == entry["workflow_id"]
    assert run.attributes.get("workflowVersion") == entry["workflow_version"]


@pytest.mark.parametrize(
    "entry",
    [e for e in MANIFEST if "workflow_label" in e],
    ids=[e["file"] for e in MANIFEST if "workflow_label" in e],
)
def test_run_names_from_txt_label(samples, entry):
    run = parse_one(samples / "duckflux" / entry["file"])
    label = entry["workflow_label"]
    version = run.attributes.get("workflowVersion")
    assert label == (run.name if version is None else f"{run.name} (v{version})")
    assert run.type == run.name
    assert run.attributes["workflowLabel"] == label


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("Release", "beta"),
        ("Release", "rc-1"),
        ("Release", "2024.06-hotfix"),
        ("Nightly ETL (fails at load)", 7),
        ("Sync (eu-west)", "beta"),
        ("Sync (eu-west)", None),
        ("Report (v2 draft)", None),
        ("Report (verified)", None),
        ("Vendors (vip)", None),
        ("Release", "BETA.2"),
        ("(v1)", None),
        ("Two\nlines (x)", "1.0"),
    ],
)
def test_txt_label_splits_into_name_and_version(tmp_path, name, version):
    document = trace([step(1, "exec", 1, 2)], workflowName=name)
    if version is not None:
        document["execution"]["workflowVersion"] = version
    path = tmp_path / "label.txt"
    path.write_text(txt_trace(document))
    run = parse_one(path)
    assert (run.name, run.type) == (name, name)
    assert run.attributes.get("workflowVersion") == (None if version is None else str(version))
    # The name and type match the JSON run of the same workflow.
    json_run = parse_one(write_json(tmp_path / "label.json", document))
    assert (json_run.name, json_run.type) == (run.name, run.type)


def sample_workflow(entry: dict[str, Any]) -> str:
    """The workflow of a manifest entry; a running snapshot's is its finished twin's."""
    if entry["workflow"]:
        return entry["workflow"]
    folder = entry["file"].rsplit(".", 1)[1]
    twin = f"{folder}/{entry['file'].split('/')[1]}"
    return next(e["workflow"] for e in MANIFEST if e["file"] == twin)


@pytest.mark.parametrize("workflow", sorted({e["workflow"] for e in MANIFEST if e["workflow"]}))
def test_one_workflow_gets_one_run_type_in_every_encoding(samples, workflow):
    # TXT keeps only `workflowName ?? workflowId`: the JSON and SQLite runs use it too.
    entries = [e for e in MANIFEST if sample_workflow(e) == workflow]
    assert {e["format"] for e in entries} == {"json", "txt", "sqlite"}
    names = {e["workflow_name"] for e in entries if "workflow_name" in e}
    runs = [parse_one(samples / "duckflux" / e["file"]) for e in entries]
    assert {(run.name, run.type) for run in runs} == {(name, name) for name in names}
    assert len(names) == 1


@pytest.mark.parametrize(
    ("workflow", "expected"),
    [
        ({"workflowId": "nightly", "workflowName": "Nightly (EU)"}, "Nightly (EU)"),
        ({"workflowId": "nightly"}, "nightly"),
        ({}, "unnamed"),
    ],
)
def test_run_type_falls_back_like_the_txt_label(tmp_path, workflow, expected):
    document = trace([step(1, "exec", 1, 2)], workflowVersion="3")
    del document["execution"]["workflowId"], document["execution"]["workflowName"]
    document["execution"].update(workflow)
    for path in three_encodings(tmp_path, document):
        run = parse_one(path)
        assert (run.name, run.type) == (expected, expected), path.suffix


# The error of each sample workflow's failed step, by seq; 05's skipped step with
# an error (onError: skip) does not count.
FAILED_STEP_ERRORS = {
    "02-failing-step.flow.yaml": (3, 'ERROR: relation "facts" does not exist'),
    "05-skip-retry-fallback.flow.yaml": (4, "503 Service Unavailable"),
}


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_failed_run_error_is_its_failed_step_error(samples, entry):
    run = parse_one(samples / "duckflux" / entry["file"])
    failed = entry["status_in_file"] == "failure"
    seq, error = FAILED_STEP_ERRORS.get(entry["workflow"], (None, "")) if failed else (None, "")
    assert (run.error, run.attributes.get("error_from_step")) == (error, seq)
    if seq is not None:
        [step] = [s for s in run.steps if s.key == str(seq)]
        assert (step.status, step.error) == (Status.FAILED, error)


@pytest.mark.parametrize(
    ("status", "failed_steps", "expected"),
    [
        # seq 3 failed first, seq 2 later; seq 1 failed without an error.
        ("failure", {1: None, 3: "three", 2: "two"}, (2, "two")),
        # Aborted before any step failed: no error to give.
        ("failure", {}, (None, "")),
        # A finished run with a failed step (e.g. a fallback) is not failed.
        ("success", {2: "two"}, (None, "")),
    ],
)
def test_failed_run_error_in_every_encoding(tmp_path, status, failed_steps, expected):
    steps = [
        step(seq, "exec", seq, seq + 1, status="failure", **({"error": e} if e else {}))
        for seq, e in failed_steps.items()
    ]
    document = trace([*steps, step(9, "exec", 9, 10, name="ok")], status=status)
    for path in three_encodings(tmp_path, document):
        run = parse_one(path)
        assert (run.attributes.get("error_from_step"), run.error) == expected, path.suffix


def test_an_error_the_file_gives_the_run_is_kept(tmp_path):
    # Not duckflux's model, but a tool re-saving the trace may add one.
    steps = [step(1, "exec", 1, 2, status="failure", error="exit code 3")]
    document = trace(steps, status="failure", error="aborted by the operator")
    run = parse_one(write_json(tmp_path / "e.json", document))
    assert (run.error, "error_from_step" in run.attributes) == ("aborted by the operator", False)


def test_readme_counts(samples):
    loop = parse_one(samples / "duckflux" / "json/b2c0c4d4-ed5c-4e88-83ca-a371f130295a.json")
    assert len(loop.steps) == 21
    assert Counter(s.raw_status for s in loop.steps) == {"success": 19, "skipped": 2}
    assert sum(s.loop_index is not None for s in loop.steps) == 19

    fallback = parse_one(
        samples / "duckflux" / "sqlite/db1c297a-1469-4acf-9443-27dbcfee34ca.sqlite"
    )
    assert Counter(s.status for s in fallback.steps) == {
        Status.SUCCEEDED: 3,
        Status.SKIPPED: 2,
        Status.FAILED: 1,
    }
    [retried] = [s for s in fallback.steps if s.retries is not None]
    assert (retried.name, retried.retries) == ("flaky_upload", 2)
    [cache] = [s for s in fallback.steps if s.name == "best_effort_cache"]
    assert (cache.status, cache.error) == (Status.SKIPPED, "cache server unreachable")

    # The JSON writer's race: the process finished, the file says running.
    raced = parse_one(samples / "duckflux" / "json/d26b9bf8-6c22-4197-b9e6-74b14ab037a8.json")
    assert (raced.status, raced.raw_status, len(raced.steps)) == (Status.RUNNING, "running", 6)
    assert raced.finished_at is None
    assert raced.completeness == (0, 6)


@pytest.mark.parametrize("name", [e["file"] for e in MANIFEST])
def test_steps_come_in_seq_order_with_parents_first(samples, name):
    run = parse_one(samples / "duckflux" / name)
    keys = [int(s.key) for s in run.steps]
    assert keys == sorted(keys)
    seen: set[str] = set()
    for s in run.steps:
        assert s.parent_key is None or s.parent_key in seen
        seen.add(s.key)


@pytest.mark.parametrize("name", LOOP_FILES)
def test_loop_nesting(samples, name):
    # 03-loop-iterations: loop `page` (seq 1) runs fetch_page, maybe_flag and an
    # `if` five times; the last `if` runs final_page_marker (17); then the
    # `until` loop (18) runs poll_status three times.
    run = parse_one(samples / "duckflux" / name)
    expected = {1: None, 17: 16, 18: None, 19: 18, 20: 18, 21: 18}
    expected.update(dict.fromkeys(range(2, 17), 1))
    assert parents(run) == expected
    by_seq = {int(s.key): s for s in run.steps}
    assert [by_seq[seq].loop_index for seq in (2, 5, 8, 11, 14)] == [0, 1, 2, 3, 4]
    assert (by_seq[16].type, by_seq[17].name) == ("if", "final_page_marker")


@pytest.mark.parametrize("name", PARALLEL_FILES)
def test_parallel_nesting(samples, name):
    # 04-parallel-branches: prepare, parallel(branch_a, branch_b, branch_c, wait), merge.
    run = parse_one(samples / "duckflux" / name)
    assert parents(run) == {1: None, 2: None, 3: 2, 4: 2, 5: 2, 6: 2, 7: None}
    completion = sorted(run.steps, key=lambda s: s.attributes["completion_index"])
    assert [int(s.key) for s in completion] == [1, 5, 4, 6, 3, 2, 7]


@pytest.mark.parametrize("name", FLAT_FILES)
def test_workflows_without_containers_are_flat(samples, name):
    assert set(parents(parse_one(samples / "duckflux" / name)).values()) == {None}


@pytest.mark.parametrize("name", SNAPSHOTS)
def test_running_snapshot_is_less_complete_than_its_finished_twin(samples, name):
    snapshot_path = samples / "duckflux" / name
    twin_path = samples / "duckflux" / snapshot_path.suffix.lstrip(".") / snapshot_path.name
    snapshot, finished = parse_one(snapshot_path), parse_one(twin_path)

    assert snapshot.external_id == finished.external_id
    assert (snapshot.status, finished.status) == (Status.RUNNING, Status.SUCCEEDED)
    assert [s.name for s in snapshot.steps] == ["step_one", "step_two"]
    assert snapshot.completeness == (0, 2)
    assert snapshot.completeness < finished.completeness == (1, 4)
    assert snapshot.fingerprint != finished.fingerprint
    assert (snapshot.finished_at, snapshot.duration_ms, snapshot.output) == (None, None, None)


CONTENT_FIELDS = ("key", "parent_key", "name", "type", "raw_status", "input", "output")
CONTENT_FIELDS += ("error", "retries", "loop_index", "truncated")


@pytest.mark.parametrize("workflow", sorted({e["workflow"] for e in MANIFEST if e["workflow"]}))
def test_every_encoding_gives_the_same_content(samples, workflow):
    """The three encodings of one workflow hold separate runs (own ids and
    times) but the same step names, values and nesting."""
    files = [
        e["file"]
        for e in MANIFEST
        if e["workflow"] == workflow and "d26b9bf8" not in e["file"]  # the raced extra run
    ]
    assert len(files) == 3
    views = []
    for name in files:
        run = parse_one(samples / "duckflux" / name)
        steps = [tuple(getattr(s, name) for name in CONTENT_FIELDS) for s in run.steps]
        views.append((run.raw_status, run.input, run.output, steps))
    assert views[0] == views[1] == views[2]


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("name", JSON_FILES)
def test_txt_and_sqlite_renderings_parse_like_the_json(samples, tmp_path, name):
    source = samples / "duckflux" / name
    document = load_json(source)
    expected = parse_one(source)
    txt = tmp_path / f"{source.stem}.txt"
    txt.write_text(txt_trace(document))
    db = write_sqlite(tmp_path / f"{source.stem}.sqlite", document)

    for path in (txt, db):
        assert duckflux.sniff(path, read_head(path))
        run = parse_one(path)
        assert [step_view(s) for s in run.steps] == [step_view(s) for s in expected.steps]
        assert (run.external_id, run.status, run.raw_status, run.started_at) == (
            expected.external_id,
            expected.status,
            expected.raw_status,
            expected.started_at,
        )
        assert (run.input, run.output, run.completeness) == (
            expected.input,
            expected.output,
            expected.completeness,
        )


# --------------------------------------------------------------------------- sniff


def test_sniff_accepts_duckflux_traces_and_rejects_every_other_sample(samples):
    checked = Counter()
    for path in sorted(samples.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(samples).parts
        expected = relative[0] == "duckflux" and relative[1] in TRACE_DIRS
        assert duckflux.sniff(path, read_head(path)) is expected, path
        checked[expected] += 1
    assert checked[True] == 22
    assert checked[False] >= 20  # greentic, traceos, runs, workflow and duckflux's non-traces


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"   \n",
        b"\x00\x01\x02\xff binary garbage",
        b"# execution\nworkflow: no id line\n",
        b'{"trace_version": 1, "flow": {"id": "x"}, "steps": []}',
        b'[{"execution": {"id": "x"}}]',
        b'{"execution": "not an object", "steps": []}',
    ],
)
def test_sniff_rejects(tmp_path, content):
    path = tmp_path / "file.json"
    path.write_bytes(content)
    assert duckflux.sniff(path, read_head(path)) is False


def test_sniff_rejects_other_sqlite_layouts(tmp_path):
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    # `executions` + `steps`, but not duckflux's columns.
    conn.executescript("CREATE TABLE executions (id TEXT); CREATE TABLE steps (run_id TEXT);")
    conn.close()
    assert duckflux.sniff(path, read_head(path)) is False


def test_sniff_of_a_corrupt_sqlite_file_fails_cleanly(tmp_path):
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 600)
    try:
        assert duckflux.sniff(path, read_head(path)) is False
    except ParseError as exc:
        assert "SQLite" in str(exc)


def test_sniff_and_parse_a_json_with_its_keys_reordered(samples, tmp_path):
    source = samples / "duckflux" / "json/dd2a7cb9-9321-4360-a9d4-061f6ff99388.json"
    path = tmp_path / source.name
    path.write_bytes(orjson.dumps(load_json(source), option=orjson.OPT_SORT_KEYS))
    assert not read_head(path).startswith(b'{"execution":{"id"')
    assert duckflux.sniff(path, read_head(path))
    # The fingerprint hashes the parsed content, not the bytes.
    assert parse_one(path).fingerprint == parse_one(source).fingerprint


# --------------------------------------------------------------------------- values


def test_truncated_values_are_flagged(tmp_path):
    big_input = '{"rows": [1, 2, 3...[truncated]'
    document = trace(
        [
            step(1, "exec", 1, 2, input={"a": 1}, output="abc...[truncated]"),
            step(2, "exec", 3, 4, input=big_input, output="x...[truncated]"),
            step(3, "exec", 5, 6, input="plain", output="[truncated] at the start only"),
        ]
    )
    for path in (
        write_json(tmp_path / "t.json", document),
        tmp_path / "t.txt",
        write_sqlite(tmp_path / "t.sqlite", document),
    ):
        if path.suffix == ".txt":
            path.write_text(txt_trace(document))
        one, two, three = parse_one(path).steps
        assert (one.truncated, one.attributes["truncated_fields"]) == (True, ["output"])
        assert (two.truncated, two.attributes["truncated_fields"]) == (True, ["input", "output"])
        assert two.input == big_input
        assert (three.truncated, "truncated_fields" in three.attributes) == (False, False)


def test_unknown_fields_are_kept_in_attributes(tmp_path):
    document = trace([step(1, "exec", 1, 2, spanId="abc")], tenant="acme")
    document["generator"] = {"name": "other"}
    run = parse_one(write_json(tmp_path / "x.json", document))
    assert run.attributes == {
        "encoding": "json",
        "tenant": "acme",
        "workflowId": "synthetic",
        "top_level": {"generator": {"name": "other"}},
    }
    assert run.steps[0].attributes == {"spanId": "abc", "completion_index": 0}


def test_fingerprint_follows_the_content(samples, tmp_path):
    source = samples / "duckflux" / "json/42462fed-a9ef-4b4a-89d5-3755b1f42178.json"
    document = load_json(source)
    compact = tmp_path / "compact.json"
    compact.write_bytes(orjson.dumps(document))
    assert parse_one(compact).fingerprint == parse_one(source).fingerprint
    document["steps"][2]["output"] = {"uploaded": False}
    changed = write_json(tmp_path / "changed.json", document)
    assert parse_one(changed).fingerprint != parse_one(source).fingerprint


# --------------------------------------------------------------------------- nesting


def test_parallel_branch_holding_a_loop(tmp_path):
    # parallel(1) runs a loop(2) and, beside it, a quick exec(3) that ends inside
    # the loop's time window: without loopIndex it cannot be in the loop.
    document = trace(
        [
            step(3, "exec", 1, 20, name="beside"),
            step(4, "exec", 2, 40, name="inside", loopIndex=0),
            step(5, "exec", 41, 89, name="inside", loopIndex=1),
            step(2, "loop", 1, 90),
            step(1, "parallel", 0, 100),
        ]
    )
    run = parse_one(write_json(tmp_path / "p.json", document))
    assert parents(run) == {1: None, 2: 1, 3: 1, 4: 2, 5: 2}


def test_nested_loops_and_millisecond_ties(tmp_path):
    # loop outer(1): iteration 0 runs loop inner(2) (two iterations) and an if(5)
    # starting the very millisecond inner ends, holding b(6); iteration 1 runs c(7).
    document = trace(
        [
            step(3, "exec", 0, 10, name="a", loopIndex=0),
            step(4, "exec", 10, 20, name="a", loopIndex=1),
            step(2, "loop", 0, 20, name="inner", loopIndex=0),
            step(6, "exec", 20, 20, name="b", loopIndex=0),
            step(5, "if", 20, 20, loopIndex=0, input={"condition": "true"}),
            step(7, "exec", 20, 30, name="c", loopIndex=1),
            step(1, "loop", 0, 50, name="outer"),
        ]
    )
    run = parse_one(write_json(tmp_path / "n.json", document))
    assert parents(run) == {1: None, 2: 1, 3: 2, 4: 2, 5: 1, 6: 5, 7: 1}


def test_running_file_without_its_container_yet(tmp_path):
    # Containers are written when they end: mid-run, loop children have no parent yet.
    document = trace(
        [step(2, "exec", 1, 2, loopIndex=0), step(3, "exec", 2, 3, loopIndex=1)],
        status="running",
        finishedAt="",
        duration=0,
    )
    run = parse_one(write_json(tmp_path / "r.json", document))
    assert parents(run) == {2: None, 3: None}
    assert (run.status, run.finished_at, run.duration_ms) == (Status.RUNNING, None, None)
