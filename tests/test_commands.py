"""Management commands: ingest (incl. --json, --format, --watch), tracestats, rescan_sources."""

import io
import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from traces import sources as scans
from traces.models import Run, TraceFile, TraceSource

pytestmark = pytest.mark.django_db
BROKEN_GREENTIC = '{"trace_version": 1, "flow": {"id": "x"}, "steps": ['


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- ingest ---------------------------------------------------------------------------------


def test_ingest_json_counts_the_greentic_and_traceos_samples(samples):
    out, _ = run("ingest", str(samples / "greentic"), str(samples / "traceos"), "--json")
    assert json.loads(out) == {
        "files": {"ingested": 9, "unchanged": 0, "failed": 0, "skipped": 2},
        "runs": 13,
        "steps": 51,
        "calls": 0,
        "links": 0,
        "logs": 1,
        "errors": [],
    }


def test_ingest_again_finds_everything_unchanged(samples):
    run("ingest", str(samples / "greentic"))
    out, _ = run("ingest", str(samples / "greentic"), "--json")
    assert json.loads(out)["files"] == {"ingested": 0, "unchanged": 4, "failed": 0, "skipped": 0}


def test_ingest_prints_a_summary_line(samples):
    out, _ = run("ingest", str(samples / "greentic"))
    assert out.strip() == (
        "files: 4 ingested, 0 unchanged, 0 failed, 0 skipped · runs 4 · steps 17 · calls 0 · "
        "links 0 · logs 1"
    )


def test_ingest_exits_1_when_a_file_fails_and_still_ingests_the_rest(samples, tmp_path):
    shutil.copy(samples / "greentic/01-success-always/trace.json", tmp_path / "good.json")
    (tmp_path / "bad.json").write_text(BROKEN_GREENTIC)
    out = io.StringIO()
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("ingest", str(tmp_path), "--json", stdout=out, stderr=err)
    assert raised.value.returncode == 1
    summary = json.loads(out.getvalue())
    assert summary["files"]["failed"] == 1 and summary["files"]["ingested"] == 1
    assert "bad.json" in summary["errors"][0]["path"]
    assert Run.objects.count() == 1
    assert TraceFile.objects.get(status="error").error


def test_ingest_exits_0_when_nothing_fails(samples):
    call_command("ingest", str(samples / "greentic"), stdout=io.StringIO())


def test_format_forces_the_parser_past_the_sniffer(samples, tmp_path):
    # The greentic sniffer ignores .tmp files (writes in progress); --format reads it anyway.
    trace = tmp_path / "trace.json.tmp"
    shutil.copy(samples / "greentic/01-success-always/trace.json", trace)
    with pytest.raises(CommandError):
        run("ingest", str(trace))
    assert not Run.objects.exists()
    run("ingest", str(trace), "--format", "greentic")
    assert Run.objects.get().format == "greentic"


def test_an_unknown_format_is_refused(samples):
    with pytest.raises(CommandError):
        run("ingest", str(samples / "greentic"), "--format", "nope")


def test_watch_picks_up_a_file_added_between_scans(samples, tmp_path, monkeypatch):
    shutil.copy(samples / "greentic/01-success-always/trace.json", tmp_path / "a.json")

    def add_a_file(seconds):
        assert seconds == 0
        shutil.copy(samples / "greentic/02-node-error/trace.json", tmp_path / "b.json")

    monkeypatch.setattr(scans, "_sleep", add_a_file)
    out, _ = run("ingest", str(tmp_path), "--watch", "--max-scans", "2", "--interval", "0")
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert "files: 1 ingested, 0 unchanged" in lines[0]
    assert "files: 1 ingested, 1 unchanged" in lines[1]
    assert Run.objects.count() == 2


def test_watch_prints_only_when_something_changed(samples, tmp_path, monkeypatch):
    shutil.copy(samples / "greentic/01-success-always/trace.json", tmp_path / "a.json")
    monkeypatch.setattr(scans, "_sleep", lambda seconds: None)
    out, _ = run("ingest", str(tmp_path), "--watch", "--max-scans", "4", "--interval", "0")
    assert len(out.strip().splitlines()) == 1


def test_watch_json_prints_one_document_per_change(samples, tmp_path, monkeypatch):
    shutil.copy(samples / "greentic/01-success-always/trace.json", tmp_path / "a.json")

    def break_it(seconds):
        (tmp_path / "bad.json").write_text(BROKEN_GREENTIC)

    monkeypatch.setattr(scans, "_sleep", break_it)
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(
            "ingest", str(tmp_path), "--watch", "--json", "--max-scans", "3", "--interval", "0",
            stdout=out, stderr=io.StringIO(),
        )  # fmt: skip
    assert raised.value.returncode == 1
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    # Scan 1: a.json; scan 2: bad.json fails (a change); scan 3: the same failure, silent.
    assert [doc["files"]["failed"] for doc in documents] == [0, 1]


def test_watch_stops_cleanly_on_ctrl_c_with_the_last_status(samples, tmp_path, monkeypatch):
    shutil.copy(samples / "greentic/01-success-always/trace.json", tmp_path / "a.json")

    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(scans, "_sleep", interrupt)
    out, err = run("ingest", str(tmp_path), "--watch", "--interval", "5")
    assert "files: 1 ingested" in out
    assert "stopped after 1 scan(s); last: 0 failed" in err


def test_watch_paths_reports_changes_to_its_callback(samples, tmp_path, monkeypatch):
    shutil.copy(samples / "greentic/01-success-always/trace.json", tmp_path / "a.json")
    monkeypatch.setattr(scans, "_sleep", lambda seconds: None)
    seen = []
    result = scans.watch_paths(
        [str(tmp_path)],
        interval=0,
        max_scans=3,
        on_scan=lambda report, changed: seen.append(changed),
    )
    assert seen == [True, False, False]
    assert result.scans == 3 and not result.interrupted


# --- tracestats -----------------------------------------------------------------------------


def test_tracestats_json_has_exactly_the_documented_shape(samples):
    run("ingest", str(samples / "greentic"), str(samples / "traceos"))
    out, _ = run("tracestats", "--json")
    assert json.loads(out) == {
        "runs": {
            "greentic": {"failed": 2, "succeeded": 2},
            "traceos": {"failed": 2, "running": 1, "succeeded": 6},
        },
        "steps": {
            "greentic": {"failed": 2, "succeeded": 15},
            "traceos": {"failed": 3, "running": 1, "succeeded": 30},
        },
        "calls": {"greentic": 0, "traceos": 0},
        "links": {"greentic": 0, "traceos": 0},
        "logs": {"greentic": 1, "traceos": 0},
        "files": {"ok": 9, "error": 0},
    }


def test_tracestats_raw_counts_by_the_sources_own_status_words(samples):
    run("ingest", str(samples / "greentic"), str(samples / "traceos"))
    out, _ = run("tracestats", "--json", "--raw")
    totals = json.loads(out)
    assert totals["runs"]["greentic"] == {"": 2, "flow_error": 1, "node_error": 1}
    assert totals["steps"]["traceos"] == {"enter": 2, "error": 2, "exit": 30}


def test_tracestats_on_all_samples_counts_every_format(samples):
    run("ingest", str(samples))
    totals = json.loads(run("tracestats", "--json")[0])
    assert set(totals) == {"runs", "steps", "calls", "links", "logs", "files"}
    formats = {"duckflux", "greentic", "traceos", "runs", "workflow", "otlp"}
    for key in ("runs", "steps"):
        assert set(totals[key]) == formats
        assert all(isinstance(n, int) for by in totals[key].values() for n in by.values())
    for key in ("calls", "links", "logs"):
        assert set(totals[key]) == formats
    assert totals["calls"]["runs"] == 33 and totals["logs"]["workflow"] == 259
    assert totals["files"]["error"] == 0


def test_tracestats_table(samples):
    run("ingest", str(samples / "greentic"))
    out, _ = run("tracestats")
    assert "greentic" in out and "runs by status" in out and "files: 4 ok, 0 with errors" in out


# --- rescan_sources -------------------------------------------------------------------------


@pytest.fixture
def roots(settings, tmp_path, samples):
    settings.TRACER_SOURCE_ROOTS = [tmp_path]
    for name in ("01-success-always", "02-node-error", "03-flow-error-unknown"):
        (tmp_path / name).mkdir()
        shutil.copy(samples / "greentic" / name / "trace.json", tmp_path / name / "trace.json")
    return tmp_path


def source(path, **fields):
    return TraceSource.objects.create(path=str(path), **fields)


def test_only_enabled_sources_whose_schedule_has_elapsed_are_due(roots):
    now = timezone.now()
    every = timedelta(minutes=10)
    never_scanned = source(roots / "01-success-always", rescan_every=every)
    overdue = source(
        roots / "02-node-error", rescan_every=every, last_scan_started_at=now - every * 2
    )
    source(roots / "03-flow-error-unknown", rescan_every=every, last_scan_started_at=now)
    source(roots / "x", rescan_every=None)  # on demand only
    source(roots / "y", rescan_every=every, enabled=False)
    assert scans.sources_to_scan(now=now) == [never_scanned, overdue]
    assert len(scans.sources_to_scan(everything=True, now=now)) == 4
    assert scans.is_due(overdue, now + every)
    assert scans.next_scan_at(overdue) == now - every


def test_rescan_sources_scans_the_due_ones_one_line_each(roots):
    every = timedelta(minutes=10)
    source(roots / "01-success-always", rescan_every=every)
    source(roots / "02-node-error", rescan_every=every)
    source(roots / "03-flow-error-unknown")
    out, _ = run("rescan_sources")
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{roots / '01-success-always'}: 1 ingested, 0 unchanged")
    assert Run.objects.count() == 2
    out, _ = run("rescan_sources")
    assert out.strip() == "no source is due"
    out, _ = run("rescan_sources", "--all")
    assert len(out.strip().splitlines()) == 3 and Run.objects.count() == 3


def test_rescan_sources_exits_1_when_a_source_has_failures(roots):
    (roots / "01-success-always/bad.json").write_text(BROKEN_GREENTIC)
    source(roots / "01-success-always")
    with pytest.raises(CommandError) as raised:
        run("rescan_sources", "--all")
    assert raised.value.returncode == 1


def test_rescan_sources_reports_a_source_that_left_the_roots(roots, settings, tmp_path):
    source(roots / "01-success-always")
    settings.TRACER_SOURCE_ROOTS = [tmp_path / "elsewhere"]
    with pytest.raises(CommandError):
        run("rescan_sources", "--all")


def test_rescan_sources_loop_keeps_going_until_interrupted(roots, monkeypatch):
    source(roots / "01-success-always", rescan_every=timedelta(minutes=10))
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt
        # the schedule comes round again
        TraceSource.objects.update(last_scan_started_at=timezone.now() - timedelta(hours=1))

    monkeypatch.setattr(scans, "_sleep", sleep)
    out, err = run("rescan_sources", "--loop", "--interval", "7")
    assert sleeps == [7, 7]
    assert len(out.strip().splitlines()) == 2
    assert "1 ingested" in out and "1 unchanged" in out
    assert "stopped after 2 round(s)" in err


def test_rescan_sources_loop_max_rounds(roots, monkeypatch):
    source(roots / "01-success-always", rescan_every=timedelta(minutes=10))
    monkeypatch.setattr(scans, "_sleep", lambda seconds: None)
    out, _ = run("rescan_sources", "--loop", "--max-rounds", "3", "--interval", "0")
    assert len(out.strip().splitlines()) == 1  # due once; then not again for ten minutes


# --- fill_failed_at -------------------------------------------------------------------------


def stored_failures() -> dict[int, tuple]:
    from traces.models import Step

    failed = Step.objects.filter(status="failed")
    return {
        pk: (at, estimated)
        for pk, at, estimated in failed.values_list("pk", "failed_at", "failed_at_estimated")
    }


def old_code_ingest(samples, *, emptied=("failed_at", "failed_at_estimated")) -> dict[int, tuple]:
    """The samples ingested, plus a failed step with no time at all (neither it nor its
    run has a start), then their failed steps' `emptied` columns NULL, as an ingest by
    code older than the migration that added them leaves them (0032: failed_at, 0033:
    failed_at_estimated). Returns what the store gave them."""
    from tests.factories import make_runs, make_steps
    from traces.ingest.loader import ingest_paths
    from traces.models import Step

    assert ingest_paths([samples]).failed == []
    (untimed_run,) = make_runs(1, status="failed", type="untimed")
    make_steps(untimed_run, 1, status="failed", error="no clock")
    Run.objects.filter(pk=untimed_run.pk).update(started_at=None)
    Step.objects.filter(run=untimed_run).update(started_at=None, failed_at=None)
    stored = stored_failures()
    failed = Step.objects.filter(status="failed")
    # greentic's: no start, their run's time, an estimate.
    assert failed.filter(started_at=None, failed_at__isnull=False, failed_at_estimated=True)
    assert failed.filter(failed_at_estimated=False).exists()
    failed.update(**dict.fromkeys(emptied))
    return stored


def test_fill_failed_at_gives_failed_steps_written_by_old_code_what_they_miss(samples, client):
    from django.urls import reverse

    from traces.models import Step

    stored = old_code_ingest(samples)
    greentic = Step.objects.filter(status="failed", run__format="greentic").first()
    steps_url = reverse("traces:step-list")
    since = {"status": "failed", "since": "2000-01-01T00:00:00Z"}
    assert greentic.pk not in {s.pk for s in client.get(steps_url, since).context["page"].items}
    out, _ = run("fill_failed_at", "--dry-run")
    assert out == f"{len(stored)} failed steps without a failure time or its kind\n"
    out, _ = run("fill_failed_at", "--batch-size", "7")
    assert stored_failures() == stored
    greentic.refresh_from_db()
    assert greentic.started_at is None and greentic.failed_at == greentic.run.started_at
    assert greentic.failed_at_estimated is True
    lines = out.splitlines()
    # Batches of 7 failed steps, newest first; the untimed one (the newest) gets only
    # whether its (missing) time is estimated.
    batches = [line for line in lines if line.startswith("batch ")]
    assert batches[:2] == ["batch 1: filled 7 failed steps", "batch 2: filled 7 failed steps"]
    assert len(batches) == -(-len(stored) // 7)
    assert sum(int(line.split()[3]) for line in batches) == len(stored)
    assert lines[-2:] == [
        f"filled what {len(stored)} failed steps missed",
        "1 failed step left without a time: neither they nor their run have a start",
    ]
    # The failed-steps list has them back (it ranges failures by that time).
    named = {**since, "name": greentic.name, "name_match": "exact"}
    assert greentic.pk in {s.pk for s in client.get(steps_url, named).context["page"].items}
    # Running it again changes nothing.
    out, _ = run("fill_failed_at")
    assert stored_failures() == stored
    assert out.splitlines() == [
        "filled what 0 failed steps missed",
        "1 failed step left without a time: neither they nor their run have a start",
    ]


def test_fill_failed_at_gives_steps_written_by_0032_code_whether_their_time_is_estimated(
    samples, client
):
    """Code that writes failed_at but not failed_at_estimated: the failing-now strip
    counted greentic's failed steps as timed until the repair."""
    from traces.models import Step
    from traces.queries.failing import failed_steps

    stored = old_code_ingest(samples, emptied=("failed_at_estimated",))
    everything = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC))
    before = failed_steps(*everything)
    assert before["estimated_steps_day"] == 0
    out, _ = run("fill_failed_at")
    assert f"filled what {len(stored)} failed steps missed" in out.splitlines()
    assert stored_failures() == stored
    after = failed_steps(*everything)
    estimated = Step.objects.filter(status="failed", run__times_estimated=True, synthetic=False)
    assert after["estimated_steps_day"] == estimated.count() > 0
    assert after["steps_last_day"] == before["steps_last_day"] - estimated.count()


def test_fill_failed_at_leaves_other_steps_and_what_they_did_not_miss_alone(samples):
    from traces.ingest.loader import ingest_paths
    from traces.models import Step

    assert ingest_paths([samples]).failed == []
    columns = ("pk", "failed_at", "failed_at_estimated")
    before = set(Step.objects.values_list(*columns))
    # A wrong time it did not miss is not its business (a recount's is).
    some = Step.objects.filter(status="failed").first()
    Step.objects.filter(pk=some.pk).update(failed_at=timezone.now(), failed_at_estimated=True)
    out, _ = run("fill_failed_at")
    assert out == "filled what 0 failed steps missed\n"
    after = set(Step.objects.values_list(*columns))
    assert {row for row in after if row[0] != some.pk} == {
        row for row in before if row[0] != some.pk
    }
    assert not Step.objects.exclude(status="failed").exclude(failed_at=None).exists()
    assert not Step.objects.exclude(status="failed").exclude(failed_at_estimated=None).exists()


def test_fill_failed_at_refuses_a_batch_of_nothing():
    with pytest.raises(CommandError):
        run("fill_failed_at", "--batch-size", "0")
