"""The repeated steps read model (StepGroup: per parent, the children of one name
and a loop's iterations) against a recount of the Step table, after every way the
store writes or deletes runs."""

import math
from collections import defaultdict
from datetime import timedelta

import pytest
from django.urls import reverse

from tests.factories import BASE_TIME
from tests.read_models import migrated_from, runs_gone_from_source
from tests.test_read_model_causes import change_source
from traces.ingest import step_groups, store
from traces.ingest.loader import ingest_paths
from traces.ingest.records import RunRecord, StepRecord
from traces.models import Run, Step, StepGroup

pytestmark = pytest.mark.django_db


def _nearest_rank(values: list[float], q: float):
    if not values:
        return None
    values = sorted(values)
    return values[max(math.ceil(q * len(values)) - 1, 0)]


def _failed(step: Step) -> bool:
    return step.status == "failed" or (step.items_failed or 0) > 0


def recount() -> dict:
    """Every group, computed from the steps in Python, as (run, parent, kind, name) ->
    (count, failed, items failed, timed, p50, p95, max, slowest, slowest index)."""
    steps = list(Step.objects.order_by("pk"))
    loop_index = {s.pk: s.loop_index for s in steps}
    by_name, by_parent = defaultdict(list), defaultdict(list)
    for step in steps:
        if not step.synthetic:
            by_name[(step.run_id, step.parent_id, step.name)].append(step)
            if step.loop_index is not None:
                by_parent[(step.run_id, step.parent_id)].append(step)
    groups = {}
    roots = defaultdict(int)
    for step in steps:
        roots[step.run_id] += step.parent_id is None
    for run_id, n in roots.items():
        if n > step_groups.COUNT_ROOTS_ABOVE:
            groups[(run_id, None, "root", "")] = (n, 0, 0, 0, None, None, None, None, None)
    for (run_id, parent_id, name), members in by_name.items():
        if len(members) < step_groups.MIN_GROUP:
            continue
        timed = [(max(s.duration_ms, 0.0), s) for s in members if s.duration_ms is not None]
        slowest = max(timed, key=lambda t: t[0], default=(None, None))[1]
        groups[(run_id, parent_id, "name", name)] = (
            len(members),
            sum(_failed(s) for s in members),
            sum(max(s.items_failed or 0, 0) for s in members),
            len(timed),
            _nearest_rank([d for d, _ in timed], 0.5),
            _nearest_rank([d for d, _ in timed], 0.95),
            max((d for d, _ in timed), default=None),
            slowest.pk if slowest else None,
            slowest.loop_index if slowest else None,
        )
    for (run_id, parent_id), members in by_parent.items():
        if parent_id is not None and all(s.loop_index == loop_index[parent_id] for s in members):
            continue
        iterations = defaultdict(list)
        for step in members:
            iterations[step.loop_index].append(step)
        if len(iterations) < step_groups.MIN_ITERATIONS:
            continue
        spans = []
        for index, its in sorted(iterations.items()):
            starts = [s.started_at for s in its if s.started_at]
            ends = [s.finished_at for s in its if s.finished_at]
            if starts and ends and max(ends) >= min(starts):
                spans.append(((max(ends) - min(starts)).total_seconds() * 1000, its[0], index))
            elif any(s.duration_ms is not None for s in its):
                took = sum(max(s.duration_ms, 0.0) for s in its if s.duration_ms is not None)
                spans.append((took, its[0], index))
        slowest = max(spans, key=lambda t: t[0], default=None)
        groups[(run_id, parent_id, "loop", "")] = (
            len(iterations),
            sum(any(_failed(s) for s in its) for its in iterations.values()),
            sum(max(s.items_failed or 0, 0) for s in members),
            len(spans),
            _nearest_rank([t[0] for t in spans], 0.5),
            _nearest_rank([t[0] for t in spans], 0.95),
            max((t[0] for t in spans), default=None),
            slowest[1].pk if slowest else None,
            slowest[2] if slowest else None,
        )
    return groups


def stored() -> dict:
    return {
        (g.run_id, g.parent_id, g.kind, g.name): (
            g.count, g.failed, g.items_failed, g.timed, g.p50_ms, g.p95_ms, g.max_ms,
            g.slowest_id, g.slowest_index,
        )
        for g in StepGroup.objects.all()
    }  # fmt: skip


def _close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def assert_read_model_is_the_recount():
    expected, got = recount(), stored()
    assert set(got) == set(expected)
    for key, values in expected.items():
        assert all(_close(a, b) for a, b in zip(got[key], values, strict=True)), (
            key,
            got[key],
            values,
        )
    for group in StepGroup.objects.all():
        assert sum(group.bins) == group.timed


def test_ingest_of_the_samples_counts_every_repeated_step(samples):
    assert ingest_paths([samples]).failed == []
    assert_read_model_is_the_recount()
    kinds = set(StepGroup.objects.values_list("kind", flat=True))
    assert kinds == {"name", "loop"}
    # The runs sample's upsert_batch steps under each process_charges, told apart by offset.
    batches = StepGroup.objects.filter(name="upsert_batch")
    assert sorted(b.count for b in batches) == [3, 4, 4]
    for group in batches:
        assert group.differs_by == "offset" and group.slowest.name == "upsert_batch"
        assert group.p50_ms <= group.p95_ms <= group.max_ms == group.slowest.duration_ms
    # duckflux loops: iterations by loop index (their steps need no other difference).
    loop = StepGroup.objects.filter(kind="loop", run__format="duckflux").first()
    assert loop.count >= 3 and loop.slowest_index is not None
    assert not StepGroup.objects.filter(run__format="duckflux").exclude(differs_by="").exists()


def test_ingesting_the_same_files_again_changes_nothing(samples):
    ingest_paths([samples])
    before = stored()
    ingest_paths([samples])
    assert stored() == before


def test_a_resync_recounts_the_run(runs_db):
    ingest_paths([runs_db])
    group = StepGroup.objects.get(name="upsert_batch", count=4, failed=0)
    change_source(
        runs_db,
        (
            "UPDATE steps SET status = 'failed', error = 'boom', duration_ms = 99999, "
            "updated_at = '2026-03-04T09:00:00.000Z' WHERE step_type = 'upsert_batch' "
            "AND step_index = 2 AND parent_step_id = (SELECT parent_step_id FROM steps "
            "WHERE id = ?)",
            (group.slowest.key,),
        ),
        ("UPDATE runs SET updated_at = '2026-03-04T09:00:00.000Z'", ()),
    )
    ingest_paths([runs_db])
    assert_read_model_is_the_recount()
    moved = StepGroup.objects.get(run_id=group.run_id, name="upsert_batch")
    assert moved.pk != group.pk and moved.failed == group.failed + 1
    assert moved.max_ms == 99999 and moved.slowest.status == "failed"


def test_the_delete_button_takes_the_groups_off(client, samples):
    ingest_paths([samples])
    run = Run.objects.get(pk=StepGroup.objects.values_list("run_id", flat=True).first())
    response = client.post(reverse("traces:run-delete", args=[run.pk]))
    assert response.status_code in (302, 303)
    assert not StepGroup.objects.filter(run_id=run.pk).exists()
    assert_read_model_is_the_recount()


@pytest.mark.parametrize("mirrored", [False, True], ids=["kept then pruned", "mirrored"])
def test_runs_gone_from_their_source_are_taken_off(runs_db, mirrored):
    gone = runs_gone_from_source(runs_db, mirrored=mirrored, check=assert_read_model_is_the_recount)
    assert not StepGroup.objects.filter(run_id__in=gone).exists()


def _loop_record(external_id: str, iterations: int = 6, *, fail_at: int | None = None):
    """A loop container whose iterations each hold a fetch and a save step."""
    steps = [StepRecord(key="loop", name="each order", type="loop", duration_ms=1.0)]
    for i in range(iterations):
        start = BASE_TIME + timedelta(seconds=10 * i)
        for j, name in enumerate(("fetch", "save")):
            steps.append(
                StepRecord(
                    key=f"{i}.{j}", parent_key="loop", name=name, loop_index=i,
                    started_at=start + timedelta(seconds=j), duration_ms=1000.0 * (i + 1),
                    finished_at=start + timedelta(seconds=j, milliseconds=1000 * (i + 1)),
                    status="failed" if i == fail_at and j == 1 else "succeeded",
                    input={"order": f"o{i}", "kind": "same"},
                )
            )  # fmt: skip
    return RunRecord(
        format="otlp", external_id=external_id, status="succeeded", started_at=BASE_TIME,
        steps=steps,
    )  # fmt: skip


def test_a_loop_counts_its_iterations_and_names_the_slowest():
    store.write_run(_loop_record("a", fail_at=2), source_file=None, origin="")
    assert_read_model_is_the_recount()
    loop = StepGroup.objects.get(kind="loop")
    assert (loop.count, loop.failed, loop.slowest_index) == (6, 1, 5)
    assert loop.slowest.key == "5.0" and loop.max_ms == 7000.0  # 1 s offset + 6 s
    assert loop.p50_ms == 4000.0 and loop.first_failed.key == "2.1"
    saves = StepGroup.objects.get(kind="name", name="save")
    assert (saves.count, saves.failed, saves.differs_by) == (6, 1, "")  # the loop index tells


def test_a_run_given_twice_in_one_transaction_counts_once_as_last_written():
    index = store.RunIndex()
    for record in (_loop_record("a", 8), _loop_record("a", 3, fail_at=0)):
        store.write_run(record, source_file=None, origin="", index=index)
    index.settle()
    assert_read_model_is_the_recount()
    assert StepGroup.objects.get(kind="loop").count == 3


def test_hostile_values_are_counted_without_overflow():
    record = RunRecord(format="otlp", external_id="h", status="failed", started_at=BASE_TIME)
    durations = [1e308, float("inf"), -1.0, None, 0.5, float("nan"), 0.0]
    record.steps = [
        StepRecord(key=str(i), name="名" * 600, duration_ms=d, items_failed=10**30, input={"a": i})
        for i, d in enumerate(durations)
    ]
    store.write_run(record, source_file=None, origin="")
    group = StepGroup.objects.get()
    assert group.count == 7 and group.max_ms == step_groups.MAX_MS and group.differs_by == "a"
    store.delete_runs([group.run_id])
    assert not StepGroup.objects.exists()


def test_the_first_differing_field_follows_the_first_steps_key_order():
    differing = step_groups.differing_field
    assert differing([{"a": 1, "b": 1}, {"a": 1, "b": 2}]) == "b"
    assert differing([{"a": 1}, {"a": 1, "b": 2}]) == ""
    assert differing([{"a": 1, "b": 1}, {"b": 1}]) == "a"
    assert differing([{"a": 1}, "x"]) == "" and differing([{"a": 1}]) == ""
    assert differing([{'"a': 1, "b": 1}, {'"a': 2, "b": 2}]) == "b"
    assert step_groups.histogram([1.0, 1.0, 2.0, 13.0]) == [2, 1, *[0] * 9, 1]


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_read_model_from_the_stored_runs():
    with migrated_from("0021_critical_path") as apps:
        OldRun, OldStep = apps.get_model("traces", "Run"), apps.get_model("traces", "Step")
        run = OldRun.objects.create(format="runs", external_id="1", status="succeeded")
        for seq in range(1, 5):
            OldStep.objects.create(
                run=run, key=str(seq), seq=seq, position=seq, name="load",
                status="failed" if seq == 1 else "succeeded", duration_ms=seq * 1.5,
            )  # fmt: skip
    assert_read_model_is_the_recount()
    assert list(StepGroup.objects.values_list("name", "count", "failed", "max_ms")) == [
        ("load", 4, 1, 6.0)
    ]


def test_a_run_with_more_roots_than_a_window_counts_them():
    record = RunRecord(format="otlp", external_id="r", status="succeeded", started_at=BASE_TIME)
    record.steps = [StepRecord(key=str(i), name=f"s{i % 150}") for i in range(450)]
    store.write_run(record, source_file=None, origin="")
    assert_read_model_is_the_recount()
    root = StepGroup.objects.get(kind="root")
    assert (root.parent_id, root.count) == (None, 450)
    assert StepGroup.objects.filter(kind="name").count() == 150  # each name 3 times
