"""The duckflux parser (`traces/ingest/duckflux/`) on the samples and on files
built here. No database needed.

The TXT and SQLite builders below follow duckflux's own writers
(`packages/core/src/tracer/writers/{txt,sqlite}.ts`), so a JSON sample rendered
through them must parse to the same steps as the JSON itself.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from traces.ingest import duckflux
from traces.ingest.common import parse_iso, read_head
from traces.ingest.duckflux import json_file
from traces.ingest.records import ParseError, RunRecord, Status, StepRecord

DUCKFLUX = Path(__file__).resolve().parent.parent / "samples" / "duckflux"
MANIFEST = json.loads((DUCKFLUX / "manifest.json").read_text())
TRACE_DIRS = ("json", "txt", "sqlite", "running-snapshot")
STATUSES = {
    "success": Status.SUCCEEDED,
    "failure": Status.FAILED,
    "skipped": Status.SKIPPED,
    "running": Status.RUNNING,
}

LOOP_FILES = [e["file"] for e in MANIFEST if e["workflow"] == "03-loop-iterations.flow.yaml"]
PARALLEL_FILES = [e["file"] for e in MANIFEST if e["workflow"] == "04-parallel-branches.flow.yaml"]
FLAT_FILES = [
    e["file"]
    for e in MANIFEST
    if e["workflow"] is None or e["workflow"].startswith(("01", "02", "05", "06"))
]
JSON_FILES = [e["file"] for e in MANIFEST if e["format"] == "json"]
SNAPSHOTS = [e["file"] for e in MANIFEST if e["file"].startswith("running-snapshot/")]
SQLITE_DDL = """
CREATE TABLE executions (
  id TEXT PRIMARY KEY, workflow_id TEXT, workflow_name TEXT, workflow_version TEXT,
  started_at TEXT NOT NULL, finished_at TEXT, duration_ms INTEGER, status TEXT NOT NULL,
  inputs TEXT, output TEXT);
CREATE TABLE steps (
  id INTEGER PRIMARY KEY AUTOINCREMENT, execution_id TEXT NOT NULL REFERENCES executions(id),
  seq INTEGER NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, started_at TEXT,
  finished_at TEXT, duration_ms INTEGER, status TEXT NOT NULL, input TEXT, output TEXT,
  error TEXT, retries INTEGER, loop_index INTEGER);
"""


# --------------------------------------------------------------------------- helpers


def parse_one(path: Path) -> RunRecord:
    """The file's single run, its lazy steps read while the parser is still open."""
    runs = []
    for run in duckflux.parse(path):
        run.steps = list(run.steps)
        runs.append(run)
    assert len(runs) == 1
    return runs[0]


def run_fields(run: RunRecord) -> dict[str, Any]:
    skip = {"steps", "calls", "links", "logs"}
    return {f.name: getattr(run, f.name) for f in fields(run) if f.name not in skip}


def step_view(step: StepRecord) -> dict[str, Any]:
    """A step without what depends on the encoding (SQLite's row id)."""
    view = {f.name: getattr(step, f.name) for f in fields(step)}
    view["attributes"] = {k: v for k, v in step.attributes.items() if k != "row_id"}
    return view


def parents(run: RunRecord) -> dict[int, int | None]:
    return {int(s.key): None if s.parent_key is None else int(s.parent_key) for s in run.steps}


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


def txt_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def txt_block(step: dict[str, Any]) -> str:
    lines = [
        f"## [{step['seq']}] {step['name']} ({step['type']})",
        f"startedAt: {step['startedAt']}",
    ]
    if step.get("finishedAt"):
        lines.append(f"finishedAt: {step['finishedAt']}")
    if "duration" in step:
        lines.append(f"duration: {step['duration']}ms")
    lines.append(f"status: {step['status']}")
    if "loopIndex" in step:
        lines.append(f"loopIndex: {step['loopIndex']}")
    if step.get("retries", 0) > 0:
        lines.append(f"retries: {step['retries']}")
    lines.append(f"input: {txt_value(step.get('input'))}")
    lines.append(f"output: {txt_value(step.get('output'))}")
    if step.get("error"):
        lines.append(f"error: {step['error']}")
    lines.append("")
    return "\n".join(lines)


def txt_trace(document: dict[str, Any], late: int = 0) -> str:
    """`document` (the JSON model) as duckflux's TXT writer writes it. With
    `late`, the last `late` step blocks lose the finalize race and land after
    the output section (FORMATS.md §1, "Finalize race")."""
    execution = document["execution"]
    version = execution.get("workflowVersion")
    label = next(
        (execution[k] for k in ("workflowName", "workflowId") if execution.get(k) is not None),
        "unnamed",
    )
    label += f" (v{version})" if version is not None else ""
    header = [
        "# execution",
        f"id: {execution['id']}",
        f"workflow: {label}",
        f"startedAt: {execution['startedAt']}",
        "status: running",
        "",
        "# inputs",
        txt_value(execution.get("inputs")),
        "",
        "# steps",
        "",
    ]
    blocks = [txt_block(step) for step in document["steps"]]
    on_time, behind = blocks[: len(blocks) - late], blocks[len(blocks) - late :]
    text = "\n".join(header) + "".join(on_time)
    if execution["status"] == "running":
        return text + "".join(behind)
    text += "\n".join(["# output", txt_value(execution.get("output")), ""]) + "".join(behind)
    final = (
        f"status: {execution['status']}\nfinishedAt: {execution['finishedAt']}\n"
        f"duration: {execution['duration']}ms"
    )
    return re.sub(r"^status: running$", lambda _m: final, text, count=1, flags=re.MULTILINE)


TXT_BLOCK_START = re.compile(r"^## \[\d+\] .* \([a-z]+\)\nstartedAt: ", re.MULTILINE)


def lose_the_race(text: str, late: int) -> str:
    """A finished TXT file (without look-alike lines in values) as the writer
    leaves it when its last `late` step blocks are appended after `# output`."""
    section = text.rindex("\n# output\n") + 1
    starts = [m.start() for m in TXT_BLOCK_START.finditer(text, 0, section)]
    cut = starts[-late]
    return text[:cut] + text[section:] + text[cut:section]


def sql_value(value: Any) -> Any:
    # Strings are stored raw, everything else as compact JSON.
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def write_sqlite(path: Path, document: dict[str, Any]) -> Path:
    """`document` (the JSON model) as duckflux's SQLite writer stores it."""
    execution = document["execution"]
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE_DDL)
    version = execution.get("workflowVersion")
    running = execution["status"] == "running"
    conn.execute(
        "INSERT INTO executions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            execution["id"],
            execution.get("workflowId"),
            execution.get("workflowName"),
            None if version is None else str(version),
            execution["startedAt"],
            None if running else execution["finishedAt"],
            None if running else round(execution["duration"]),
            execution["status"],
            sql_value(execution.get("inputs")),
            None if running else sql_value(execution.get("output")),
        ),
    )
    for step in document["steps"]:
        conn.execute(
            "INSERT INTO steps (execution_id, seq, name, type, started_at, finished_at,"
            " duration_ms, status, input, output, error, retries, loop_index)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                execution["id"],
                step["seq"],
                step["name"],
                step["type"],
                step["startedAt"],
                step.get("finishedAt"),
                step.get("duration"),
                step["status"],
                sql_value(step.get("input")),
                sql_value(step.get("output")),
                step.get("error"),
                step.get("retries") or None,
                step.get("loopIndex"),
            ),
        )
    conn.commit()
    conn.close()
    return path


def three_encodings(directory: Path, document: dict[str, Any]) -> list[Path]:
    """`document` (the JSON model) written as JSON, TXT and SQLite."""
    txt = directory / "trace.txt"
    txt.write_text(txt_trace(document))
    return [
        write_json(directory / "trace.json", document),
        txt,
        write_sqlite(directory / "trace.sqlite", document),
    ]


BASE_TIME = datetime(2026, 11, 21, 19, 0, 0, tzinfo=UTC)


def at(ms: int) -> str:
    return (BASE_TIME + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:-6] + "Z"


def step(seq: int, kind: str, start: int, end: int, **extra: Any) -> dict[str, Any]:
    """A step of the JSON model, `start`/`end` in ms after BASE_TIME."""
    record = {
        "seq": seq,
        "name": extra.pop("name", kind),
        "type": kind,
        "startedAt": at(start),
        "finishedAt": at(end),
        "duration": end - start,
        "status": extra.pop("status", "success"),
    }
    record.update(extra)
    return record


def trace(steps: list[dict[str, Any]], **execution: Any) -> dict[str, Any]:
    """A finished JSON document; `steps` in completion (file) order."""
    header = {
        "id": "00000000-0000-4000-8000-000000000001",
        "workflowId": "synthetic",
        "workflowName": "Synthetic",
        "startedAt": at(0),
        "finishedAt": at(1000),
        "duration": 1000.5,
        "status": "success",
        "inputs": {},
        "output": None,
    }
    header.update(execution)
    return {"execution": header, "steps": steps}


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


# --------------------------------------------------------------------------- JSON errors


def test_truncated_json_at_every_offset(samples, tmp_path):
    data = (samples / "duckflux" / "json/6b45129b-7616-488c-8763-e80b2b87d7a4.json").read_bytes()
    path = tmp_path / "cut.json"
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(ParseError, match=r"^truncated JSON at line \d+, column \d+") as caught:
            parse_one(path)
        assert duckflux.RETRY_HINT in str(caught.value)


def test_truncated_json_reports_the_line(samples, tmp_path):
    data = (samples / "duckflux" / "json/b2c0c4d4-ed5c-4e88-83ca-a371f130295a.json").read_bytes()
    cut = data.index(b'"name": "maybe_flag"')
    path = tmp_path / "cut.json"
    path.write_bytes(data[:cut])
    line = data[:cut].count(b"\n") + 1
    with pytest.raises(ParseError, match=rf"^truncated JSON at line {line}, "):
        parse_one(path)


def test_json_cut_inside_a_multibyte_character(tmp_path):
    data = json.dumps(trace([step(1, "exec", 1, 2, output="café")]), ensure_ascii=False).encode()
    cut = data.index("é".encode()) + 1
    path = tmp_path / "cut.json"
    path.write_bytes(data[:cut])
    with pytest.raises(ParseError, match=r"^truncated JSON at line 1 .*inside a character"):
        parse_one(path)


@pytest.mark.parametrize("cut", [1, 100, 1000, -1])
def test_truncated_json_on_the_streaming_path(samples, tmp_path, monkeypatch, cut):
    monkeypatch.setattr(json_file, "STREAM_THRESHOLD_BYTES", 0)
    data = (samples / "duckflux" / "json/b2c0c4d4-ed5c-4e88-83ca-a371f130295a.json").read_bytes()
    path = tmp_path / "cut.json"
    path.write_bytes(data[:cut])
    with pytest.raises(ParseError, match=r"^truncated JSON at line \d+ \(byte \d+\)") as caught:
        parse_one(path)
    assert duckflux.RETRY_HINT in str(caught.value)


def test_invalid_json_in_the_middle(samples, tmp_path):
    data = (samples / "duckflux" / "json/6b45129b-7616-488c-8763-e80b2b87d7a4.json").read_bytes()
    path = tmp_path / "bad.json"
    broken = data.replace(b'"status": "success"', b'"status": success', 1)
    path.write_bytes(broken)
    line = broken[: broken.index(b'"status": success')].count(b"\n") + 1
    with pytest.raises(ParseError, match=rf"^invalid JSON at line {line}, column 15"):
        parse_one(path)


@pytest.mark.parametrize("suffix", ["json", "txt", "sqlite"])
@pytest.mark.parametrize("content", [b"", b" \n\n"])
def test_empty_file(tmp_path, suffix, content):
    path = tmp_path / f"empty.{suffix}"
    path.write_bytes(content)
    with pytest.raises(ParseError, match=r"^empty file \(the file may still be being written"):
        parse_one(path)


def test_binary_garbage(tmp_path):
    path = tmp_path / "garbage.json"
    path.write_bytes(bytes(range(256)) * 4)
    assert duckflux.sniff(path, read_head(path)) is False
    with pytest.raises(ParseError, match="not a duckflux trace"):
        parse_one(path)


def _set(path: str, value: Any):
    """A change of the sample document: `path` like "steps.3.seq"; `...` deletes."""

    def change(document):
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key = int(last) if isinstance(target, list) else last
        if value is ...:
            del target[key]
        else:
            target[key] = value
        return document

    return change


WRONG_SHAPES = [
    (lambda d: [d], "top level: expected an object, got a list"),
    (_set("execution", ...), "not a duckflux trace: no 'execution' key"),
    (_set("steps", ...), "steps: missing"),
    (_set("steps", {"0": {}}), "steps: expected a list, got an object"),
    (_set("execution", [1]), "execution: expected an object, got a list"),
    (_set("execution.id", ...), "execution.id: missing"),
    (_set("execution.status", "done"), "execution.status: unknown status 'done'"),
    (_set("execution.startedAt", "noon"), "execution.startedAt: 'noon' is not a timestamp"),
    (_set("execution.duration", "1s"), 'execution.duration: expected a number, got "1s"'),
    (_set("steps.0", 5), "steps[0]: expected an object, got 5"),
    (_set("steps.1.seq", ...), "steps[1].seq: missing"),
    (_set("steps.3.seq", "x"), 'steps[3].seq: expected an integer, got "x"'),
    (_set("steps.3.seq", 1), "steps[3].seq: seq 1 appears twice"),
    (_set("steps.2.startedAt", "yesterday"), "steps[2].startedAt: 'yesterday' is not a timestamp"),
    (_set("steps.2.finishedAt", 1e30), "steps[2].finishedAt: timestamp 1e+30 is out of range"),
    (_set("steps.0.status", "exploded"), "steps[0].status: unknown status 'exploded'"),
    (_set("steps.0.status", ...), "steps[0].status: missing"),
    (_set("steps.0.loopIndex", 1.5), "steps[0].loopIndex: expected an integer, got 1.5"),
    (_set("steps.0.retries", True), "steps[0].retries: expected an integer, got true"),
    (_set("steps.0.name", ["a"]), "steps[0].name: expected a string, got a list"),
]


@pytest.mark.parametrize("streaming", [False, True], ids=["in-memory", "streaming"])
@pytest.mark.parametrize(("change", "message"), WRONG_SHAPES, ids=[m for _c, m in WRONG_SHAPES])
def test_wrong_shapes(samples, tmp_path, monkeypatch, streaming, change, message):
    if streaming:
        monkeypatch.setattr(json_file, "STREAM_THRESHOLD_BYTES", 0)
    source = samples / "duckflux" / "json/6b45129b-7616-488c-8763-e80b2b87d7a4.json"
    path = write_json(tmp_path / "shape.json", change(load_json(source)))
    with pytest.raises(ParseError) as caught:
        parse_one(path)
    assert str(caught.value).startswith(message)


# --------------------------------------------------------------------------- streaming


def _parse_both_ways(path: Path, monkeypatch) -> tuple[RunRecord, RunRecord]:
    in_memory = parse_one(path)
    streamed_calls = []
    scan = json_file._scan_json_stream
    monkeypatch.setattr(json_file, "STREAM_THRESHOLD_BYTES", 0)
    monkeypatch.setattr(
        json_file, "_scan_json_stream", lambda *a: streamed_calls.append(1) or scan(*a)
    )
    streamed = parse_one(path)
    assert streamed_calls == [1]
    return in_memory, streamed


@pytest.mark.parametrize("name", JSON_FILES)
def test_streaming_gives_the_same_records(samples, monkeypatch, name):
    in_memory, streamed = _parse_both_ways(samples / "duckflux" / name, monkeypatch)
    assert run_fields(streamed) == run_fields(in_memory)
    assert streamed.steps == in_memory.steps


def test_streaming_a_bigger_generated_run(tmp_path, monkeypatch):
    # 200 iterations of a loop holding an `if` and a step with a 20 kB output.
    steps, seq, clock = [], 2, 1
    for index in range(200):
        body = step(seq + 1, "exec", clock, clock + 2, loopIndex=index, output="x" * 20_000)
        condition = step(seq, "if", clock, clock + 2, loopIndex=index, input={"condition": "c"})
        steps += [body, condition]
        seq, clock = seq + 2, clock + 3
    steps.append(step(1, "loop", 0, clock, name="pages"))
    document = trace(steps, extra_field={"kept": True})
    document["writer"] = "test"
    path = write_json(tmp_path / "big.json", document)

    in_memory, streamed = _parse_both_ways(path, monkeypatch)
    assert run_fields(streamed) == run_fields(in_memory)
    assert streamed.steps == in_memory.steps
    assert len(streamed.steps) == 401
    tree = parents(streamed)
    assert tree[1] is None
    assert all(tree[s] == 1 for s in range(2, 402, 2))  # the ifs
    assert all(tree[s] == s - 1 for s in range(3, 403, 2))  # each body in its if
    assert streamed.attributes["extra_field"] == {"kept": True}
    assert streamed.attributes["top_level"] == {"writer": "test"}


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


# --------------------------------------------------------------------------- TXT


HOSTILE = (
    "line one\n"
    "## [99] fake_step (exec)\n"
    "status: running\n"
    "# output\n"
    "# steps\n"
    "error: not an error, this step succeeded\n"
    "output: still the same value\n"
)


BOOM = "boom\nerror: second line\n## [98] nope (exec)"


def hostile_document(output: Any = "final\n") -> dict[str, Any]:
    return trace(
        [
            step(1, "exec", 1, 2, name="first", input={"n": 1}, output=HOSTILE),
            step(2, "exec", 2, 3, name="second", input=HOSTILE, status="failure", error=BOOM),
            step(3, "exec", 3, 4, name="third", input=HOSTILE, output={"ok": True}),
            step(4, "exec", 4, 5, name="fourth", input=None, output="tail\n# output\n"),
        ],
        inputs={"who": "## [97] x (exec)\nstatus: running"},
        output=output,
        status="failure",
    )


def test_hostile_txt_values(tmp_path):
    document = hostile_document()
    path = tmp_path / "hostile.txt"
    path.write_text(txt_trace(document))
    # Only the header's `status: running` line is rewritten at the end.
    assert path.read_text().count("\nstatus: running\n") == 3
    assert "\nstatus: failure\nfinishedAt: " in path.read_text()
    assert duckflux.sniff(path, read_head(path))

    run = parse_one(path)
    assert (run.status, run.raw_status) == (Status.FAILED, "failure")
    assert run.input == {"who": "## [97] x (exec)\nstatus: running"}
    assert run.output == "final\n"
    assert [s.name for s in run.steps] == ["first", "second", "third", "fourth"]
    first, second, third, fourth = run.steps
    assert (first.input, first.output, first.error) == ({"n": 1}, HOSTILE, "")
    assert (second.input, second.output, second.error) == (HOSTILE, None, BOOM)
    assert (third.input, third.output, third.error) == (HOSTILE, {"ok": True}, "")
    assert (fourth.input, fourth.output) == (None, "tail\n# output\n")


def test_txt_json_output_after_a_hostile_step(tmp_path):
    document = trace([step(1, "exec", 1, 2, output="# output\n{}\n")], output={"done": True})
    path = tmp_path / "x.txt"
    path.write_text(txt_trace(document))
    run = parse_one(path)
    assert run.steps[0].output == "# output\n{}\n"
    assert run.output == {"done": True}


def test_txt_strings_stay_text(tmp_path):
    document = trace(
        [
            step(1, "exec", 1, 2, input='"quoted"', output="pending\n"),
            step(2, "exec", 2, 3, input=14000, output=[1, "two"]),
        ]
    )
    path = tmp_path / "x.txt"
    path.write_text(txt_trace(document))
    one, two = parse_one(path).steps
    assert (one.input, one.output) == ('"quoted"', "pending\n")
    assert (two.input, two.output) == (14000, [1, "two"])


@pytest.mark.parametrize(
    ("cut_after", "message"),
    [
        ("workflow: ", r"^line 3 is cut off"),
        ("startedAt: 2026-11-21T19:19:23.083Z\n", r"^the header is cut off after line 4"),
        ("## [2] step_two (exec)\nstartedAt: 2026-11-21T19:19:23.092Z\n", r"step block \[2\]"),
        ("## [2] step_t", r"^line 21 is cut off"),
    ],
)
def test_half_written_txt(samples, tmp_path, cut_after, message):
    text = (
        samples / "duckflux" / "running-snapshot/7f69de2a-ea5a-4a81-9e10-60a3209d2e61.txt"
    ).read_text()
    path = tmp_path / "cut.txt"
    path.write_text(text[: text.index(cut_after) + len(cut_after)])
    with pytest.raises(ParseError, match=message) as caught:
        parse_one(path)
    assert duckflux.RETRY_HINT in str(caught.value)


# --------------------------------------------------------------------------- TXT: finalize race


TXT_FILES = [e["file"] for e in MANIFEST if e["file"].startswith("txt/")]
FINISHED_JSON_FILES = [
    e["file"] for e in MANIFEST if e["format"] == "json" and e["status_in_file"] != "running"
]


def without_source_time(run: RunRecord) -> dict[str, Any]:
    return {k: v for k, v in run_fields(run).items() if k != "source_updated_at"}


@pytest.mark.parametrize("late", [1, 2, 3, "all"])
@pytest.mark.parametrize("name", TXT_FILES)
def test_txt_blocks_after_the_output_section_read_like_the_original(samples, tmp_path, name, late):
    # 03's last blocks are poll_status [21] and the `until` loop [18] that holds
    # it; 04's are the parallel [2] and merge [7]: containers closing last.
    source = samples / "duckflux" / name
    original = parse_one(source)
    text = source.read_text()
    late_blocks = len(original.steps) if late == "all" else late
    raced = lose_the_race(text, late_blocks)
    # The same lines, some moved.
    assert raced != text and sorted(raced.split("\n")) == sorted(text.split("\n"))
    path = tmp_path / source.name
    path.write_text(raced)

    run = parse_one(path)
    # Same status, output, steps, nesting (parent_key) and completion order.
    assert without_source_time(run) == without_source_time(original)
    assert run.steps == original.steps
    assert "output_missing" not in run.attributes


@pytest.mark.parametrize("late", [1, 2, 3, "all"])
@pytest.mark.parametrize("name", FINISHED_JSON_FILES)
def test_txt_with_late_blocks_parses_like_the_json(samples, tmp_path, name, late):
    source = samples / "duckflux" / name
    document = load_json(source)
    expected = parse_one(source)
    path = tmp_path / f"{source.stem}.txt"
    path.write_text(txt_trace(document, late=len(document["steps"]) if late == "all" else late))
    assert path.read_text().index("\n# output\n") < path.read_text().rindex("\n## [")

    run = parse_one(path)
    assert [step_view(s) for s in run.steps] == [step_view(s) for s in expected.steps]
    assert parents(run) == parents(expected)
    assert (run.status, run.raw_status, run.finished_at, run.input, run.output) == (
        expected.status,
        expected.raw_status,
        expected.finished_at,
        expected.input,
        expected.output,
    )
    assert run.completeness == expected.completeness


def test_txt_race_example_from_the_format_notes(tmp_path):
    path = tmp_path / "race.txt"
    path.write_text(
        "# execution\n"
        "id: 5b1f0c3e-0000-4000-8000-000000000002\n"
        "workflow: Deliver report (v3)\n"
        "startedAt: 2026-11-21T19:19:50.012Z\n"
        "status: failure\n"
        "finishedAt: 2026-11-21T19:19:51.130Z\n"
        "duration: 1118.25ms\n"
        "\n"
        "# inputs\n"
        "{}\n"
        "\n"
        "# steps\n"
        "## [1] fetch (http)\n"
        "startedAt: 2026-11-21T19:19:50.014Z\n"
        "finishedAt: 2026-11-21T19:19:51.090Z\n"
        "duration: 1076ms\n"
        "status: failure\n"
        "input: none\n"
        "output: none\n"
        "error: HTTP 502 from upstream\n"
        "# output\n"
        "none\n"
        "## [2] deliver (exec)\n"
        "startedAt: 2026-11-21T19:19:51.091Z\n"
        "finishedAt: 2026-11-21T19:19:51.120Z\n"
        "duration: 29ms\n"
        "status: success\n"
        "input: none\n"
        "output: delivered\n"
        "\n"
    )
    run = parse_one(path)
    assert (run.status, run.output, run.completeness) == (Status.FAILED, None, (1, 2))
    assert "output_missing" not in run.attributes
    fetch, deliver = run.steps
    assert (fetch.name, fetch.status, fetch.output) == ("fetch", Status.FAILED, None)
    assert fetch.error == "HTTP 502 from upstream"
    assert (deliver.name, deliver.status, deliver.output) == (
        "deliver",
        Status.SUCCEEDED,
        "delivered\n",
    )
    assert [s.attributes["completion_index"] for s in run.steps] == [0, 1]


@pytest.mark.parametrize("late", [0, 2])
def test_finished_txt_without_its_output_section(samples, tmp_path, late):
    source = samples / "duckflux" / "txt/07d54e79-4831-417b-90b6-b439565fe9bd.txt"
    original = parse_one(source)
    text = lose_the_race(source.read_text(), late) if late else source.read_text()
    path = tmp_path / "no-output.txt"
    path.write_text(re.sub(r"(?m)^# output\nmerged\n\n", "", text))
    assert "# output" not in path.read_text()

    run = parse_one(path)
    # Finished all the same; its output is unknown, not null.
    assert (run.status, run.finished_at) == (Status.SUCCEEDED, original.finished_at)
    assert (run.output, run.attributes["output_missing"]) == (None, True)
    assert run.steps == original.steps
    assert run.completeness == (1, 7)


@pytest.mark.parametrize("status", ["success", "running"])
def test_txt_without_steps(tmp_path, status):
    document = trace([], status=status, finishedAt="" if status == "running" else at(5))
    path = tmp_path / "empty-steps.txt"
    path.write_text(re.sub(r"(?s)# output\n.*", "", txt_trace(document)))
    run = parse_one(path)
    assert (run.raw_status, run.steps, run.output) == (status, [], None)
    assert run.attributes.get("output_missing") == (True if status == "success" else None)


def test_running_txt_has_no_output_section(tmp_path):
    # Look-alike lines in a value of a running file stay in the value.
    lookalike = "report\n# output\nnone\n## [9] fake_step (exec)\n"
    document = trace(
        [
            step(1, "exec", 1, 2, name="first", output=lookalike),
            step(2, "exec", 3, 4, name="second", input=lookalike, output={"n": 2}),
        ],
        status="running",
        finishedAt="",
        duration=0,
    )
    path = tmp_path / "running.txt"
    path.write_text(txt_trace(document))
    run = parse_one(path)
    assert (run.status, run.raw_status, run.finished_at) == (Status.RUNNING, "running", None)
    assert (run.output, run.duration_ms, run.completeness) == (None, None, (0, 2))
    assert "output_missing" not in run.attributes
    first, second = run.steps
    assert (first.output, second.input, second.output) == (lookalike, lookalike, {"n": 2})


@pytest.mark.parametrize(
    ("late", "output"),
    [(1, "final\n"), (1, {"done": True}), (4, None), (4, "final\n")],
)
def test_hostile_txt_values_with_late_blocks(tmp_path, late, output):
    # The section after step 3's JSON output (late=1) or right after `# steps`
    # (late=4) is certain. After step 1 or 2 (whose output and error are text)
    # it is not: step 4's `# output` line is read as the section, as without
    # the race.
    document = hostile_document(output)
    expected = parse_one(write_json(tmp_path / "hostile.json", document))
    path = tmp_path / "hostile.txt"
    path.write_text(txt_trace(document, late=late))
    run = parse_one(path)
    assert run.output == output
    assert [step_view(s) for s in run.steps] == [step_view(s) for s in expected.steps]


def test_output_line_and_json_in_an_earlier_step_output(tmp_path):
    # Without the race, a `# output` line before the last block is in a value,
    # even when JSON follows it.
    document = trace(
        [
            step(1, "exec", 1, 2, name="log", output="x\n# output\n{}\n"),
            step(2, "exec", 2, 3, name="last", output="plain\n"),
        ],
        output="done\n",
    )
    path = tmp_path / "x.txt"
    path.write_text(txt_trace(document))
    run = parse_one(path)
    assert run.output == "done\n"
    assert [s.output for s in run.steps] == ["x\n# output\n{}\n", "plain\n"]


def test_late_block_whose_input_holds_an_output_line(tmp_path):
    # A step printed a markdown heading; the chain hands it to the next step,
    # whose block came late: the `# output` line in its input is not the section.
    report = "report\n# output\nbody\n"
    document = trace(
        [
            step(1, "exec", 1, 2, name="render", output=report),
            step(2, "exec", 2, 3, name="publish", input=report, output={"ok": True}),
        ],
        output={"ok": True},
    )
    path = tmp_path / "late.txt"
    path.write_text(txt_trace(document, late=1))
    run = parse_one(path)
    assert run.output == {"ok": True}
    render, publish = run.steps
    assert (render.output, publish.input, publish.output) == (report, report, {"ok": True})


def test_txt_bad_scalar_names_its_line(samples, tmp_path):
    text = (samples / "duckflux" / "txt/07d54e79-4831-417b-90b6-b439565fe9bd.txt").read_text()
    path = tmp_path / "bad.txt"
    path.write_text(text.replace("duration: 5ms", "duration: fast", 1))
    with pytest.raises(ParseError, match=r"^line 16 \(duration\): expected a duration in ms"):
        parse_one(path)


# --------------------------------------------------------------------------- SQLite


def test_sqlite_without_an_execution_row(tmp_path):
    path = tmp_path / "starting.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE_DDL)
    conn.close()
    assert duckflux.sniff(path, read_head(path))
    with pytest.raises(ParseError, match="no execution row"):
        parse_one(path)


def test_sqlite_without_a_steps_table(tmp_path):
    path = tmp_path / "half.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE_DDL.split(";")[0])
    conn.close()
    with pytest.raises(ParseError, match="table 'steps' is missing"):
        parse_one(path)


def test_sqlite_values_raw_strings_and_json(tmp_path):
    document = trace(
        [
            step(1, "exec", 1, 2, input='"quoted"', output="14000"),
            step(2, "exec", 2, 3, input="none", output={"a": [1, 2]}),
        ],
        output="merged\n",
    )
    path = write_sqlite(tmp_path / "v.sqlite", document)
    run = parse_one(path)
    one, two = run.steps
    # Strings are stored raw: JSON text decodes, except to a string.
    assert (one.input, one.output) == ('"quoted"', 14000)
    assert (two.input, two.output) == ("none", {"a": [1, 2]})
    assert run.output == "merged\n"
    assert [s.attributes["row_id"] for s in run.steps] == [1, 2]


def test_sqlite_bad_value_names_its_row(tmp_path):
    path = write_sqlite(tmp_path / "b.sqlite", trace([step(1, "exec", 1, 2)]))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE steps SET loop_index = 'first'")
    conn.commit()
    conn.close()
    with pytest.raises(ParseError, match=r"^steps row 1\.loopIndex: expected an integer"):
        parse_one(path)
