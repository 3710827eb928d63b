"""Data migrations, run forward from the state before them."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.mark.django_db(transaction=True)
def test_greentic_runs_stored_before_the_flag_are_marked_estimated():
    apps = migrate(("traces", "0006_drop_ingestjob_paths_kind"))
    Run = apps.get_model("traces", "Run")
    for format in ("greentic", "runs"):
        Run.objects.create(format=format, external_id=f"old-{format}", status="succeeded")
    apps = migrate(("traces", "0007_greentic_times_estimated"))
    marked = apps.get_model("traces", "Run").objects.values_list("format", "times_estimated")
    assert sorted(marked) == [("greentic", True), ("runs", False)]
    migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("traces")))


@pytest.mark.django_db(transaction=True)
def test_entities_stored_before_the_read_model_are_counted_with_their_times():
    apps = migrate(("traces", "0012_otlp_format"))
    Run, Step = apps.get_model("traces", "Run"), apps.get_model("traces", "Step")
    EntityLink = apps.get_model("traces", "EntityLink")
    started = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    run = Run.objects.create(
        format="runs", external_id="old", status="succeeded", started_at=started
    )
    untimed, timed = (
        Step.objects.create(run=run, key=key, seq=i, position=i, status="succeeded",
                            started_at=at, entity_type="order", entity_id="o-1")
        for i, (key, at) in enumerate([("a", None), ("b", started + timedelta(minutes=5))])
    )  # fmt: skip
    for step, link_type, created in [
        (untimed, "input", None),
        (timed, "output", started + timedelta(minutes=9)),
        (timed, "output", None),
    ]:
        EntityLink.objects.create(
            step=step, run=run, link_type=link_type, entity_type="order", entity_id="o-1",
            external_id="x-1", created_at=created,
        )  # fmt: skip
    apps = migrate(("traces", "0013_entity_counters"))
    counter = apps.get_model("traces", "EntityCounter").objects.get()
    figures = (counter.links, counter.links_read, counter.links_written, counter.steps_written)
    assert figures == (3, 1, 2, 1)
    assert (counter.subjects, counter.runs, counter.external_id) == (2, 1, "x-1")
    assert (counter.first_seen, counter.last_seen) == (started, started + timedelta(minutes=9))
    seen = apps.get_model("traces", "EntityLink").objects.order_by("pk").values_list("seen_at")
    assert [at for (at,) in seen] == [started, *(started + timedelta(minutes=m) for m in (9, 5))]
    types = apps.get_model("traces", "EntityTypeCounter").objects.values_list(
        "entity_type", "links", "subjects"
    )
    assert list(types) == [("order", 3, 2)]
    migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("traces")))


@pytest.mark.django_db(transaction=True)
def test_steps_stored_before_paths_get_theirs():
    apps = migrate(("traces", "0014_ingest_claims"))
    Run, Step = apps.get_model("traces", "Run"), apps.get_model("traces", "Step")
    run = Run.objects.create(format="runs", external_id="old", status="succeeded")
    rows = [("r", None, "loop", None), ("i0", "r", "item", 0), ("i1", "r", "item", 1),
            ("s", "i1", "save", 1), ("s2", "i1", "save", 1)]  # fmt: skip
    made = {}
    for seq, (key, parent, name, loop) in enumerate(rows):
        made[key] = Step.objects.create(
            run=run, key=key, seq=seq, position=seq, status="succeeded", name=name,
            parent=made.get(parent), loop_index=loop,
        )  # fmt: skip
    apps = migrate(("traces", "0017_compare"))
    from traces.ingest.step_paths import readable

    paths = dict(apps.get_model("traces", "Step").objects.values_list("key", "path"))
    shown = {key: readable(path) for key, path in paths.items()}
    assert shown == {
        "r": "loop",
        "i0": "loop / [0] item",
        "i1": "loop / [1] item",
        "s": "loop / [1] item / save",
        "s2": "loop / [1] item / save #2",
    }
    migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("traces")))


@pytest.mark.django_db(transaction=True)
def test_failed_steps_stored_before_0033_know_whether_their_time_is_estimated():
    apps = migrate(("traces", "0032_fix15"))
    Run, Step = apps.get_model("traces", "Run"), apps.get_model("traces", "Step")
    at = datetime(2026, 1, 5, tzinfo=UTC)
    for format, estimated in (("greentic", True), ("runs", False)):
        run = Run.objects.create(
            format=format, external_id=f"old-{format}", status="failed", started_at=at,
            times_estimated=estimated,
        )  # fmt: skip
        for seq, status in enumerate(("failed", "succeeded")):
            Step.objects.create(
                run=run, key=f"{seq}", seq=seq, position=seq, status=status,
                failed_at=at if status == "failed" else None,
            )  # fmt: skip
    apps = migrate(("traces", "0033_edges2"))
    steps = apps.get_model("traces", "Step").objects.values_list(
        "run__format", "status", "failed_at_estimated"
    )
    assert sorted(steps) == [
        ("greentic", "failed", True),
        ("greentic", "succeeded", None),
        ("runs", "failed", False),
        ("runs", "succeeded", None),
    ]
    migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("traces")))


@pytest.mark.django_db(transaction=True)
def test_log_lines_stored_before_0043_get_their_step_s_name_and_are_found_by_it(monkeypatch):
    """The lines' step_name filled from their steps (in batches: two lines a batch
    here) and the search index built again with it: the search by a step name finds
    them, on both databases."""
    import importlib

    from traces.search.logs import search_logs

    monkeypatch.setattr(importlib.import_module("traces.migrations.0043_logname"), "FILL_BATCH", 2)
    apps = migrate(("traces", "0042_findmini"))
    Run, Step = apps.get_model("traces", "Run"), apps.get_model("traces", "Step")
    LogEntry = apps.get_model("traces", "LogEntry")
    run = Run.objects.create(format="runs", external_id="old", status="succeeded")
    fetch, send = (
        Step.objects.create(run=run, key=name, name=name, seq=seq, position=seq)
        for seq, name in enumerate(("fetch", "send-it"))
    )
    for seq, step in enumerate((fetch, send, None, fetch, send)):
        LogEntry.objects.create(run=run, step=step, seq=seq, message=f"a zebra line {seq}")
    migrate(("traces", "0043_logname"))
    migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("traces")))
    from traces.models import LogEntry as Line

    named = list(Line.objects.order_by("seq").values_list("step_name", flat=True))
    assert named == ["fetch", "send-it", "", "fetch", "send-it"]
    for name, seqs in (("fetch", [3, 0]), ("send-it", [4, 1]), ("send", []), ("", [4, 3, 2, 1, 0])):
        hits = search_logs("zebra", {"step": name})
        assert [line.seq for line in hits.items] == seqs, name
    # Back (the column and its key gone) and forward again.
    migrate(("traces", "0042_findmini"))
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, "traces_logentry")
    assert "step_name" not in {column.name for column in columns}
    migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("traces")))
    assert [line.seq for line in search_logs("zebra", {"step": "fetch"}).items] == [3, 0]
    # Stopped midway (not atomic: the column added, the index dropped, no fill yet),
    # then run again from the start: it finishes.
    migrate(("traces", "0042_findmini"))
    logname = importlib.import_module("traces.migrations.0043_logname")
    monkeypatch.setattr(logname, "_fill_names", _stopped)
    with pytest.raises(KeyboardInterrupt):
        migrate(("traces", "0043_logname"))
    monkeypatch.undo()
    migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("traces")))
    assert [line.seq for line in search_logs("zebra", {"step": "send-it"}).items] == [4, 1]
    # Stopped after its fill (building the index): run again, the lines filled keep
    # their row version (PostgreSQL: no new version of each, no dead row).
    migrate(("traces", "0042_findmini"))
    monkeypatch.setattr(logname, "_build", _stopped_building)
    with pytest.raises(KeyboardInterrupt):
        migrate(("traces", "0043_logname"))
    monkeypatch.undo()
    versions = _row_versions()
    migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("traces")))
    assert _row_versions() == versions
    assert [line.seq for line in search_logs("zebra", {"step": "fetch"}).items] == [3, 0]


def _stopped(cursor, vendor):
    raise KeyboardInterrupt


def _stopped_building(cursor, vendor, searched):
    raise KeyboardInterrupt


def _row_versions() -> list:
    """The log lines' names and, on PostgreSQL, their row versions (xmin)."""
    version = "xmin::text" if connection.vendor == "postgresql" else "''"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT seq, step_name, {version} FROM traces_logentry ORDER BY seq")
        return cursor.fetchall()
