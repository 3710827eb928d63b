"""The ingest path end to end: files, directories and archives into the database."""

import io
import json
import os
import shutil
import sqlite3
import struct
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from traces.ingest import FORMATS, detect, loader
from traces.ingest.archives import member_mtime
from traces.ingest.loader import ingest_paths
from traces.models import Run, Step, TraceFile, TraceSource
from traces.queries.totals import trace_totals

pytestmark = pytest.mark.django_db

NOT_TRACES = {
    "duckflux/manifest.json",
    "duckflux/run-log.tsv",
    "traceos/stats.json",
    "traceos/guard-errors.json",
    "runs/schema.sql",
    "runs/run-summaries.json",
    "otlp/README.md",
} | {f"duckflux/workflows/0{n}" for n in range(1, 7)}


def sample_files(samples: Path):
    for path in sorted(samples.rglob("*")):
        if path.is_file():
            yield path, path.relative_to(samples)


def expected_format(relative: Path) -> str | None:
    text = str(relative)
    if text in NOT_TRACES or text.startswith("duckflux/workflows/"):
        return None
    return relative.parts[0]


def test_every_sample_is_recognised_by_exactly_its_own_format(samples):
    for path, relative in sample_files(samples):
        wanted = expected_format(relative)
        accepted = [
            name
            for name, module in FORMATS.items()
            if module.sniff(path, path.read_bytes()[:65536])
        ]
        assert accepted == ([wanted] if wanted else []), relative
        module = detect(path)
        assert (module.NAME if module else None) == wanted


def duckflux_expectations(samples: Path) -> dict:
    """Finished duckflux runs per the sample manifest (snapshots are older copies)."""
    manifest = json.loads((samples / "duckflux/manifest.json").read_text())
    runs = [entry for entry in manifest if not entry["file"].startswith("running-snapshot/")]
    steps: dict[str, int] = {}
    word = {"success": "succeeded", "failure": "failed", "skipped": "skipped"}
    for entry in runs:
        for status, count in entry["steps_by_status"].items():
            steps[word[status]] = steps.get(word[status], 0) + count
    return {"runs": len(runs), "steps": steps}


def test_samples_reproduce_the_readme_counts(samples):
    report = ingest_paths([samples])
    assert report.failed == []
    totals = trace_totals()
    duck = duckflux_expectations(samples)
    assert sum(totals["runs"]["duckflux"].values()) == duck["runs"] == 19
    assert totals["steps"]["duckflux"] == duck["steps"]
    assert totals["runs"]["greentic"] == {"succeeded": 2, "failed": 2}
    assert sum(totals["steps"]["greentic"].values()) == 5 + 3 + 4 + 5
    assert totals["runs"]["traceos"] == {"succeeded": 6, "failed": 2, "running": 1}
    assert totals["steps"]["traceos"] == {"succeeded": 30, "failed": 3, "running": 1}
    raw = trace_totals(raw=True)
    runs = list(Run.objects.filter(format="runs"))
    tracked = [run.raw_status for run in runs if not run.attributes.get("standalone")]
    assert sorted(tracked) == sorted(["completed"] * 3 + ["failed"] * 2 + ["pending", "running"])
    assert sum(1 for run in runs if run.attributes.get("standalone")) == 1
    assert raw["steps"]["runs"] == {"completed": 22, "failed": 4, "skipped": 3, "running": 2}
    assert totals["calls"]["runs"] == 33
    assert totals["links"]["runs"] == 37
    assert raw["runs"]["workflow"] == {"completed": 3, "failed": 3, "running": 1}
    assert raw["steps"]["workflow"] == {"completed": 45, "failed": 4, "running": 5}
    assert totals["logs"]["workflow"] == 259
    assert totals["runs"]["otlp"] == {"succeeded": 2, "failed": 1}
    assert totals["steps"]["otlp"] == {"succeeded": 9, "failed": 1}
    assert totals["files"]["error"] == 0


def test_reingesting_changes_nothing(samples):
    ingest_paths([samples])
    before = list(Run.objects.order_by("pk").values_list("pk", "fingerprint", "ingested_at"))
    steps_before = Step.objects.count()
    report = ingest_paths([samples])
    assert report.summary()["files"]["ingested"] == 0
    assert report.summary()["runs"] == 0
    assert (
        list(Run.objects.order_by("pk").values_list("pk", "fingerprint", "ingested_at")) == before
    )
    assert Step.objects.count() == steps_before


def test_reingesting_a_touched_but_identical_file_changes_nothing(samples, tmp_path):
    copy = tmp_path / "trace.json"
    shutil.copy(samples / "greentic/01-success-always/trace.json", copy)
    ingest_paths([copy])
    run = Run.objects.get()
    os.utime(copy, (1, 1))
    report = ingest_paths([copy])
    assert report.files[0].outcome == "unchanged"
    assert Run.objects.get().ingested_at == run.ingested_at


def test_a_rewrite_in_the_clock_tick_of_the_read_is_read_again(samples, tmp_path):
    """A filesystem's clock is coarse (a few ms on ext4, up to 2 s elsewhere): a file
    rewritten just after an ingest read it can keep the mtime it had, and at the same
    size it passed as unchanged, its last state never read. A file modified that
    shortly before its ingest began is hashed the next time; one modified long before
    is still taken by its stat, unread (its mtime put back by hand is not noticed)."""
    trace = tmp_path / "42462fed-a9ef-4b4a-89d5-3755b1f42178.json"
    failed = (samples / "duckflux/json" / trace.name).read_text()
    succeeded = failed.replace('"status": "failure"', '"status": "success"', 1)
    assert len(succeeded) == len(failed) and succeeded != failed

    def write(text: str, mtime_ns: int) -> str:
        trace.write_text(text)
        os.utime(trace, ns=(mtime_ns, mtime_ns))
        (result,) = ingest_paths([trace]).files
        return result.outcome

    just_now = time.time_ns()
    assert write(failed, just_now) == "ingested" and Run.objects.get().status == "failed"
    assert write(succeeded, just_now) == "ingested", "the rewrite passed as unchanged"
    assert Run.objects.get().status == "succeeded"
    assert write(succeeded, just_now) == "unchanged"

    long_ago = just_now - 60 * 10**9
    assert write(failed, long_ago) == "ingested" and Run.objects.get().status == "failed"
    assert TraceFile.objects.get().mtime_ns == long_ago
    assert write(succeeded, long_ago) == "unchanged" and Run.objects.get().status == "failed"


def test_a_running_run_is_updated_in_place_when_its_file_finishes(samples, tmp_path):
    trace = tmp_path / "f23d315d-8014-4e02-9a98-4d50d1014a8f.json"
    shutil.copy(samples / "duckflux/running-snapshot" / trace.name, trace)
    ingest_paths([trace])
    run = Run.objects.get()
    assert (run.status, run.step_count) == ("running", 2)
    step_url = Step.objects.get(run=run, name="step_one").get_absolute_url()
    shutil.copy(samples / "duckflux/json" / trace.name, trace)
    report = ingest_paths([trace])
    assert report.files[0].runs_updated == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.step_count) == ("succeeded", 4)
    assert Step.objects.get(run=run, name="step_one").get_absolute_url() == step_url
    assert Step.objects.filter(run=run).count() == 4


def test_an_old_running_copy_never_downgrades_a_finished_run(samples):
    ingest_paths([samples / "duckflux/json/f23d315d-8014-4e02-9a98-4d50d1014a8f.json"])
    report = ingest_paths(
        [samples / "duckflux/running-snapshot/f23d315d-8014-4e02-9a98-4d50d1014a8f.json"]
    )
    assert report.failed == []
    run = Run.objects.get()
    assert (run.status, run.step_count) == ("succeeded", 4)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.json", b"", "empty file"),
        ("binary.json", bytes(range(256)) * 4, "not a trace file"),
        ("wrong-shape.json", b'{"hello": "world"}', "not a trace file"),
        ("truncated.json", None, "truncated"),
    ],
)
def test_bad_files_are_named_and_leave_nothing_half_written(
    samples, tmp_path, name, content, reason
):
    bad = tmp_path / name
    if content is None:
        content = (
            samples / "duckflux/json/6b45129b-7616-488c-8763-e80b2b87d7a4.json"
        ).read_bytes()[:700]
    bad.write_bytes(content)
    good = samples / "greentic/02-node-error/trace.json"
    report = ingest_paths([bad, good])
    outcomes = {Path(r.path).name: r for r in report.files}
    assert outcomes[name].outcome == "failed"
    assert name in outcomes[name].error and reason in outcomes[name].error.lower()
    assert outcomes["trace.json"].outcome == "ingested"
    assert Run.objects.count() == 1
    failed = TraceFile.objects.get(status="error")
    assert failed.error == outcomes[name].error


def test_a_file_failing_half_way_writes_none_of_its_runs(samples, tmp_path):
    lines = (samples / "traceos/traces.jsonl").read_text().splitlines()
    broken = tmp_path / "dump.jsonl"
    broken.write_text("\n".join([*lines[:40], "{not json", *lines[40:]]) + "\n")
    report = ingest_paths([broken])
    assert report.failed and "line 41" in report.failed[0].error
    assert Run.objects.count() == 0 and Step.objects.count() == 0


def test_a_failed_rewrite_keeps_the_earlier_runs(samples, tmp_path):
    trace = tmp_path / "6b45129b-7616-488c-8763-e80b2b87d7a4.json"
    shutil.copy(samples / "duckflux/json" / trace.name, trace)
    ingest_paths([trace])
    trace.write_text(trace.read_text()[:300])
    report = ingest_paths([trace])
    assert report.failed
    assert Run.objects.get().step_count == 4
    shutil.copy(samples / "duckflux/json" / trace.name, trace)
    os.utime(trace, None)
    assert ingest_paths([trace]).failed == []
    assert TraceFile.objects.get().status == "ok"


# --- history: a changed file adds and updates runs, and never deletes them ----------------


def traces_of(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(record["trace_id"] for record in records))


def left_source() -> set[str]:
    runs = Run.objects.filter(left_source_at__isnull=False)
    return set(runs.values_list("external_id", flat=True))


def rewrite(path: Path, data: str, minute: int) -> None:
    """The next write of a file, with an mtime of its own (a rewrite within the same
    clock tick and size would pass as unchanged)."""
    path.write_text(data)
    when = 1_795_000_000 + 60 * minute
    os.utime(path, (when, when))


def test_a_traceos_dump_replaced_by_other_traces_keeps_the_old_ones_marked(samples, tmp_path):
    dump = tmp_path / "dump.json"
    records = json.loads((samples / "traceos/traces.json").read_text())
    ids = traces_of(records)
    first, later = set(ids[:4]), set(ids[4:])
    rewrite(dump, json.dumps([r for r in records if r["trace_id"] in first]), 0)
    ingest_paths([dump])
    # The process restarted: its next dump, to the same path, holds only its new traces.
    rewrite(dump, json.dumps([r for r in records if r["trace_id"] in later]), 1)
    report = ingest_paths([dump])
    assert report.failed == [] and Run.objects.count() == 9
    assert left_source() == first
    marked = dict(Run.objects.values_list("external_id", "left_source_at"))
    assert all(marked[trace] is None for trace in later)
    # Read again (other bytes, same traces): they left once, and keep that time.
    rewrite(dump, json.dumps([r for r in reversed(records) if r["trace_id"] in later]), 2)
    assert ingest_paths([dump]).files[0].outcome == "ingested"
    assert dict(Run.objects.values_list("external_id", "left_source_at")) == marked
    # A dump holding them again, as they were (unchanged) or shorter (kept, a shorter copy
    # never replaces a longer one): back in it.
    shorter = [r for r in records if r["trace_id"] in first][:-1]
    rewrite(dump, json.dumps(shorter + [r for r in records if r["trace_id"] in later]), 3)
    report = ingest_paths([dump])
    assert report.run_ids() == [] and Run.objects.count() == 9 and left_source() == set()


def test_a_trace_also_in_another_dump_has_not_left_when_one_dump_is_replaced(samples, tmp_path):
    """Two processes' cumulative dumps (or a copy of one) hold the same traces: the
    file read last holds them, and replacing the other does not take them out."""
    records = json.loads((samples / "traceos/traces.json").read_text())
    ids = traces_of(records)
    shared, newer = set(ids[:4]), set(ids[4:])
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for dump in (first, second):
        rewrite(dump, json.dumps([r for r in records if r["trace_id"] in shared]), 0)
        ingest_paths([dump])
    rewrite(first, json.dumps([r for r in records if r["trace_id"] in newer]), 1)
    assert ingest_paths([first]).failed == []
    assert left_source() == set() and Run.objects.count() == 9
    # Now the second dump is replaced too: the shared traces are held nowhere.
    rewrite(second, json.dumps([r for r in records if r["trace_id"] in newer]), 2)
    ingest_paths([second])
    assert left_source() == shared


def greentic_invocation(samples: Path, number: int) -> str:
    """One invocation's trace.json as the runner writes it (pretty, no final newline):
    the sample with a flow and a number of steps of its own."""
    envelope = json.loads((samples / "greentic/01-success-always/trace.json").read_text())
    envelope["flow"]["id"] = f"weather_bot.flow{number}"
    envelope["steps"] = envelope["steps"][: 1 + number % len(envelope["steps"])]
    return json.dumps(envelope, indent=2)


def test_two_greentic_invocations_through_one_path_are_two_runs(samples, tmp_path):
    trace = tmp_path / "trace.json"
    rewrite(trace, greentic_invocation(samples, 1), 0)
    ingest_paths([trace])
    first = Run.objects.get()
    rewrite(trace, greentic_invocation(samples, 2), 1)
    report = ingest_paths([trace])
    assert len(report.files[0].runs_added) == 1
    first.refresh_from_db()
    second = Run.objects.exclude(pk=first.pk).get()
    assert first.left_source_at is not None and first.step_count == 2
    assert second.left_source_at is None and second.name == "weather_bot.flow2"
    assert first.source_file_id == second.source_file_id


def test_ten_greentic_overwrites_leave_ten_runs_and_the_first_content_comes_back(samples, tmp_path):
    trace = tmp_path / "trace.json"
    for number in range(10):
        rewrite(trace, greentic_invocation(samples, number), number)
        assert ingest_paths([trace]).failed == []
    runs = Run.objects.order_by("finished_at")
    assert [run.name for run in runs] == [f"weather_bot.flow{n}" for n in range(10)]
    assert [run.left_source_at is not None for run in runs] == [True] * 9 + [False]
    # The same invocation again (same bytes, a later mtime): the same run, no duplicate.
    os.utime(trace, (1_795_000_000 + 6000, 1_795_000_000 + 6000))
    assert ingest_paths([trace]).files[0].outcome == "unchanged"
    # An invocation identical to the first: that run is back in the file, not a new one.
    first = runs.first()
    rewrite(trace, greentic_invocation(samples, 0), 100)
    report = ingest_paths([trace])
    assert report.files[0].runs_unchanged == [first.pk] and report.run_ids() == []
    assert Run.objects.count() == 10
    assert left_source() == {run.external_id for run in runs if run.name != "weather_bot.flow0"}


def test_an_earlier_invocation_written_to_another_path_is_back_in_that_file(samples, tmp_path):
    one, other = tmp_path / "one" / "trace.json", tmp_path / "other" / "trace.json"
    one.parent.mkdir()
    other.parent.mkdir()
    rewrite(one, greentic_invocation(samples, 0), 0)
    ingest_paths([one])
    rewrite(one, greentic_invocation(samples, 1), 1)
    ingest_paths([one])
    rewrite(other, greentic_invocation(samples, 0), 2)
    ingest_paths([other])
    first = Run.objects.select_related("source_file").get(name="weather_bot.flow0")
    assert first.left_source_at is None and first.source_file.path == str(other.resolve())
    assert Run.objects.count() == 2 and left_source() == set()


def test_a_source_that_mirrors_deletions_keeps_only_what_the_file_holds(samples, tmp_path):
    source = TraceSource.objects.create(path=str(tmp_path), mirror_deletions=True)
    trace = tmp_path / "trace.json"
    for number in range(3):
        rewrite(trace, greentic_invocation(samples, number), number)
        ingest_paths([tmp_path], source=source)
    run = Run.objects.get()
    assert run.name == "weather_bot.flow2" and run.left_source_at is None
    assert Step.objects.exclude(run=run).count() == 0


def test_directory_walk_skips_files_that_are_not_traces(samples):
    report = ingest_paths([samples / "traceos"])
    summary = report.summary()
    assert summary["files"]["failed"] == 0
    assert {Path(s["path"]).name for s in summary["skipped"]} == {"stats.json", "guard-errors.json"}


def test_an_unknown_file_named_explicitly_fails(samples):
    report = ingest_paths([samples / "traceos/stats.json"])
    assert "not a trace file" in report.failed[0].error


def test_zip_archives_are_ingested_member_by_member(samples, tmp_path):
    archive = tmp_path / "traces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (samples / "greentic").rglob("trace.json"):
            zf.write(path, f"greentic/{path.parent.name}/trace.json")
        zf.writestr("../escape.json", "{}")
        zf.writestr("/etc/absolute.json", "{}")
    report = ingest_paths([archive])
    assert Run.objects.count() == 4
    errors = sorted(r.error for r in report.failed)
    assert len(errors) == 2 and all("refused archive member" in e for e in errors)
    assert not (tmp_path.parent / "escape.json").exists()
    again = ingest_paths([archive])
    assert again.summary()["files"]["ingested"] == 0 and Run.objects.count() == 4


def greentic_member(samples: Path, name: str, date_time=(2026, 3, 1, 12, 0, 0), extra=b""):
    info = zipfile.ZipInfo(f"greentic/{name}/trace.json", date_time=date_time)
    info.extra = extra
    return info, (samples / "greentic" / name / "trace.json").read_bytes()


def ut_extra(moment: datetime) -> bytes:
    """An Info-ZIP extended timestamp field holding only the mtime."""
    return struct.pack("<HHBi", 0x5455, 5, 1, int(moment.timestamp()))


def ntfs_extra(moment: datetime) -> bytes:
    ticks = int((moment - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds()) * 10_000_000
    return struct.pack("<HHIHHQQQ", 0x000A, 32, 0, 1, 24, ticks, ticks, ticks)


def test_zip_members_keep_their_modified_time(samples, tmp_path):
    """`ingest x.zip`: a greentic run is dated by its member's time, not the extraction's."""
    archive = tmp_path / "traces.zip"
    exact = datetime(2026, 2, 14, 8, 30, 5, tzinfo=UTC)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(*greentic_member(samples, "01-success-always"))
        # The UT field's exact UTC time wins over the zone-less header date.
        zf.writestr(*greentic_member(samples, "02-node-error", extra=ut_extra(exact)))
        # 1980-01-01 is what tools write for "no date": not believed.
        zf.writestr(*greentic_member(samples, "03-flow-error-unknown", (1980, 1, 1, 0, 0, 0)))
    before = timezone.now() - timedelta(seconds=5)
    call_command("ingest", str(archive), stdout=io.StringIO(), stderr=io.StringIO())
    runs = {run.source_file.display_name.split("/")[-2]: run for run in Run.objects.all()}
    dated = runs["01-success-always"]
    assert dated.finished_at == dated.source_updated_at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert dated.started_at == dated.finished_at - timedelta(milliseconds=dated.duration_ms)
    assert dated.times_estimated
    assert runs["02-node-error"].finished_at == exact
    assert runs["03-flow-error-unknown"].finished_at >= before
    member = TraceFile.objects.get(display_name__endswith="01-success-always/trace.json")
    assert member.mtime == datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("date_time", "extra", "expected"),
    [
        ((2026, 3, 1, 12, 0, 0), b"", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ((2026, 3, 1, 12, 0, 0), ntfs_extra(datetime(2025, 7, 4, 1, 2, 3, tzinfo=UTC)),
         datetime(2025, 7, 4, 1, 2, 3, tzinfo=UTC)),
        ((1980, 1, 1, 0, 0, 0), b"", None),
        ((2107, 12, 31, 0, 0, 0), b"", None),
        ((2026, 2, 30, 0, 0, 0), b"", None),
        # A broken extra field falls back to the header's date.
        ((2026, 3, 1, 12, 0, 0), b"\x55\x54\x09\x00\x01", datetime(2026, 3, 1, 12, tzinfo=UTC)),
    ],
    ids=["header-as-utc", "ntfs-field", "dos-minimum", "far-future", "no-such-day", "bad-extra"],
)  # fmt: skip
def test_member_mtime_is_believed_only_within_bounds(date_time, extra, expected):
    info = zipfile.ZipInfo("trace.json")
    info.date_time, info.extra = date_time, extra
    assert member_mtime(info) == expected


def test_a_rezipped_member_with_the_same_size_and_time_is_read_again(samples, tmp_path):
    """A member's time is only as fine as the zip's: its content decides."""
    archive = tmp_path / "traces.zip"
    data = (samples / "greentic/01-success-always/trace.json").read_bytes()
    member = zipfile.ZipInfo("trace.json", (2026, 3, 1, 12, 0, 0))
    for content in (data, data.replace(b"0.4", b"0.5")):  # the same size
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(member, content)
        report = ingest_paths([archive])
    assert report.summary()["files"]["ingested"] == 1
    # The member's earlier run is kept as history, marked as having left the file.
    current = Run.objects.get(left_source_at__isnull=True)
    assert current.attributes["runner_version"] == "0.5.59"
    assert Run.objects.get(left_source_at__isnull=False).attributes["runner_version"] == "0.4.59"


def test_workflow_events_db_is_read_with_its_workflow_db(samples, tmp_path):
    for name in ("workflow.db", "events.db"):
        shutil.copy(samples / "workflow" / name, tmp_path / name)
    report = ingest_paths([tmp_path / "events.db"])
    assert report.failed == []
    assert Run.objects.filter(format="workflow").count() == 7
    again = ingest_paths([tmp_path])
    assert again.summary()["files"]["ingested"] == 0
    assert Run.objects.filter(format="workflow").count() == 7


@pytest.fixture
def workflow_dir(samples, tmp_path) -> Path:
    """workflow.db and events.db, and a greentic trace that a walk reads after events.db."""
    for name in ("workflow.db", "events.db"):
        shutil.copy(samples / "workflow" / name, tmp_path / name)
    shutil.copy(samples / "greentic/01-success-always/trace.json", tmp_path / "trace.json")
    return tmp_path


def by_name(report) -> dict:
    return {Path(result.path).name: result for result in report.files}


def test_an_events_db_gone_once_its_workflow_db_is_read_fails_alone(
    client, workflow_dir, monkeypatch
):
    ingest = loader._ingest_candidate

    def then_remove_events_db(candidate, ctx):
        result = ingest(candidate, ctx)
        if candidate.real_path.name == "workflow.db":
            (workflow_dir / "events.db").unlink()
        return result

    monkeypatch.setattr(loader, "_ingest_candidate", then_remove_events_db)
    report = ingest_paths([workflow_dir])
    results = by_name(report)
    assert results["trace.json"].outcome == "ingested"
    events = results["events.db"]
    assert events.outcome == "failed"
    assert events.error.endswith("events.db: cannot read: No such file or directory")
    assert TraceFile.objects.get(path=events.path).status == TraceFile.FileStatus.ERROR
    assert events.error in client.get("/files/", {"status": "error"}).content.decode()
    # workflow.db was read whole, in its own transaction, before events.db went;
    # its runs count in the batch (on the events.db row: workflow.db has none).
    assert Run.objects.filter(format="workflow").count() == 7
    assert report.summary()["runs"] == 7 + 1 and len(events.runs_added) == 7


def test_a_database_error_recording_an_events_db_fails_it_alone(workflow_dir, monkeypatch):
    write = loader._write_file_row

    def locked_for_events_db(trace_file, *args):
        if trace_file.path.endswith("/events.db"):
            raise OperationalError("database is locked")
        return write(trace_file, *args)

    monkeypatch.setattr(loader, "_write_file_row", locked_for_events_db)
    results = by_name(ingest_paths([workflow_dir]))
    assert results["trace.json"].outcome == "ingested"
    events = results["events.db"]
    assert events.outcome == "failed"
    reason = "internal error while ingesting (OperationalError: database is locked)"
    assert events.error.endswith(f"events.db: {reason}")
    assert TraceFile.objects.get(path=events.path).status == TraceFile.FileStatus.ERROR


@pytest.mark.parametrize("order", ["walked", "workflow.db named first"])
def test_an_events_db_whose_workflow_db_failed_fails_with_the_reason(workflow_dir, order):
    conn = sqlite3.connect(workflow_dir / "workflow.db")
    conn.execute("ALTER TABLE execution_steps DROP COLUMN status")
    conn.commit()
    conn.close()
    names = ("workflow.db", "events.db", "trace.json")
    paths = [workflow_dir] if order == "walked" else [workflow_dir / name for name in names]
    results = by_name(ingest_paths(paths))
    assert results["trace.json"].outcome == "ingested"
    events = results["events.db"]
    assert events.outcome == "failed"
    reason = 'table "execution_steps" has no column "status"'
    assert f"events.db: read with workflow.db, which failed: {reason}" in events.error
    files = {Path(f.path).name: f for f in TraceFile.objects.all()}
    assert files["events.db"].status == files["workflow.db"].status == TraceFile.FileStatus.ERROR
    assert files["events.db"].error == events.error
    assert not Run.objects.filter(format="workflow").exists()


def test_summary_counts_each_run_once(samples):
    summary = ingest_paths([samples / "duckflux"]).summary()
    assert summary["runs"] == 19
    assert summary["steps"] == sum(duckflux_expectations(samples)["steps"].values())


def test_a_file_read_by_an_older_parser_is_read_again(samples, tmp_path, monkeypatch):
    """Raising a format's PARSER_VERSION re-reads its unchanged files once."""
    trace = tmp_path / "trace.json"
    shutil.copy(samples / "greentic/01-success-always/trace.json", trace)
    assert ingest_paths([trace]).files[0].outcome == "ingested"
    assert ingest_paths([trace]).files[0].outcome == "unchanged"
    monkeypatch.setattr(FORMATS["greentic"], "PARSER_VERSION", 7, raising=False)
    assert ingest_paths([trace]).files[0].outcome == "ingested"
    assert TraceFile.objects.get().produced["parser_version"] == 7
    assert ingest_paths([trace]).files[0].outcome == "unchanged"
    assert Run.objects.count() == 1


def test_formats_whose_reading_changed_say_so(samples, tmp_path):
    """duckflux and workflow files stored by the first parsers are read again."""
    assert FORMATS["duckflux"].PARSER_VERSION >= 2 and FORMATS["workflow"].PARSER_VERSION >= 2
    ingest_paths([samples / "workflow"])
    workflow_db = TraceFile.objects.get(path__endswith="workflow.db")
    TraceFile.objects.filter(pk=workflow_db.pk).update(produced={"runs": 7})  # as stored before
    again = {Path(r.path).name: r.outcome for r in ingest_paths([samples / "workflow"]).files}
    assert again["workflow.db"] == "ingested"
    assert ingest_paths([samples / "workflow"]).files[0].outcome == "unchanged"


def test_a_directory_of_finished_txt_files_that_lost_the_race_loses_no_run(samples, tmp_path):
    """The runner appends the last blocks after `# output` in about one file in six:
    every such file is a run, with every step, not an error read again forever."""
    from tests.duckflux_files import lose_the_race

    originals = sorted((samples / "duckflux/txt").glob("*.txt"))
    for late, path in enumerate(originals, start=1):
        text = path.read_text()
        blocks = text[: text.rindex("\n# output\n")].count("\nstartedAt: ") - 1
        (tmp_path / path.name).write_text(lose_the_race(text, min(late, blocks)))
    report = ingest_paths([tmp_path])
    assert report.failed == [] and report.summary()["files"]["ingested"] == len(originals)
    raced = {run.external_id: run.step_count for run in Run.objects.all()}
    Run.objects.all().delete()
    ingest_paths(originals)
    assert {run.external_id: run.step_count for run in Run.objects.all()} == raced


def test_the_file_page_marks_the_runs_it_no_longer_holds(client, samples, tmp_path):
    trace = tmp_path / "trace.json"
    for number in range(3):
        rewrite(trace, greentic_invocation(samples, number), number)
        ingest_paths([trace])
    trace_file = TraceFile.objects.get()
    assert trace_file.produced["runs"] == 1  # what the file holds now
    html = client.get(trace_file.get_absolute_url()).content.decode()
    assert html.count(">left source</span>") == 2
    assert html.count('class="estimated"') == 6  # greentic: start and duration estimated
