"""The entities read model (EntityCounter, EntityTypeCounter, and the stored times
the entity page orders by) against a recount of the EntityLink and Step tables,
after every way the store writes or deletes them: ingest, re-sync, the delete
button, prune and a source that mirrors its writer's deletions."""

import sqlite3
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import Coalesce
from django.urls import reverse

from tests.factories import BASE_TIME, count_entities, make_runs, make_steps
from tests.test_read_model_causes import change_source, delete_source_runs
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.ingest.records import LinkRecord, RunRecord, StepRecord
from traces.models import EntityCounter, EntityLink, EntityTypeCounter, Run, Step, TraceSource
from traces.queries.entities import links_page, subjects_page

pytestmark = pytest.mark.django_db

LINK_TIME = Coalesce("created_at", "step__started_at", "run__started_at")
STEP_TIME = Coalesce("started_at", "run__started_at")
KNOWN = ["input", "output", "affected"]
UPDATED = "2026-03-04T09:00:00.000Z"
FIELDS = (
    "links", "links_read", "links_written", "links_affected", "links_other",
    "steps_read", "steps_written", "steps_affected", "steps_other", "subjects", "runs",
)  # fmt: skip


def _link_figures() -> dict:
    by_type = {"read": Q(link_type="input"), "written": Q(link_type="output")}
    by_type |= {"affected": Q(link_type="affected"), "other": ~Q(link_type__in=KNOWN)}
    figures = {f"links_{verb}": Count("id", filter=q) for verb, q in by_type.items()}
    figures |= {
        f"steps_{verb}": Count("step", distinct=True, filter=q) for verb, q in by_type.items()
    }
    rows = EntityLink.objects.values("entity_type", "entity_id").annotate(
        links=Count("id"), first=Min(LINK_TIME), last=Max(LINK_TIME), external=Max("external_id"),
        **figures,
    )  # fmt: skip
    return {(row.pop("entity_type"), row.pop("entity_id")): row for row in rows}


def recount() -> dict:
    """EntityCounter as it should be, from the links and the subject steps."""
    entities: dict = {}
    blank = dict.fromkeys(FIELDS, 0) | {"first": None, "last": None, "external": ""}
    for key, figures in _link_figures().items():
        entities[key] = blank | figures
    subjects = (
        Step.objects.filter(entity_type__gt="")
        .values_list("entity_type", "entity_id")
        .annotate(n=Count("id"), first=Min(STEP_TIME), last=Max(STEP_TIME))
    )
    for entity_type, entity_id, n, first, last in subjects:
        entry = entities.setdefault((entity_type, entity_id), dict(blank))
        entry["subjects"] = n
        entry["first"] = min((t for t in (entry["first"], first) if t is not None), default=None)
        entry["last"] = max((t for t in (entry["last"], last) if t is not None), default=None)
    runs = set(EntityLink.objects.values_list("entity_type", "entity_id", "run_id"))
    runs |= set(
        Step.objects.filter(entity_type__gt="").values_list("entity_type", "entity_id", "run")
    )
    for entity_type, entity_id, _run in runs:
        entities[(entity_type, entity_id)]["runs"] += 1
    return entities


def stored() -> dict:
    return {
        (c.entity_type, c.entity_id): {name: getattr(c, name) for name in FIELDS}
        | {"first": c.first_seen, "last": c.last_seen, "external": c.external_id}
        for c in EntityCounter.objects.all()
    }


def stored_types() -> dict:
    return {t.entity_type: (t.links, t.subjects) for t in EntityTypeCounter.objects.all()}


def recount_types() -> dict:
    types: dict = {}
    for (entity_type, _id), figures in recount().items():
        links, subjects = types.get(entity_type, (0, 0))
        types[entity_type] = (links + figures["links"], subjects + figures["subjects"])
    return types


def assert_read_model_is_the_recount():
    assert stored() == recount()
    assert stored_types() == recount_types()
    # The times the entity page orders by are the ones it would compute.
    for link in EntityLink.objects.annotate(when=LINK_TIME):
        assert link.seen_at == link.when, link.pk
    for step in Step.objects.annotate(when=STEP_TIME).only("entity_type", "entity_seen_at"):
        assert step.entity_seen_at == (step.when if step.entity_type else None), step.pk


def test_ingest_of_the_samples_counts_every_entity(samples):
    assert ingest_paths([samples]).failed == []
    assert_read_model_is_the_recount()
    assert sum(c.links for c in EntityCounter.objects.all()) == EntityLink.objects.count() > 30
    assert EntityCounter.objects.filter(subjects__gt=0, links=0).exists()
    assert EntityCounter.objects.filter(runs__gt=1).exists()


def test_ingesting_the_same_files_again_changes_nothing(samples):
    ingest_paths([samples])
    before = stored()
    ingest_paths([samples])
    assert stored() == before


def test_a_resync_that_moves_and_adds_links_moves_their_counts(runs_db):
    ingest_paths([runs_db])
    conn = sqlite3.connect(runs_db)
    link_id, step_id, run_id = conn.execute(
        "SELECT l.id, l.step_id, s.run_id FROM step_links l JOIN steps s ON s.id = l.step_id "
        "WHERE l.entity_type = 'stripe_page' ORDER BY l.id LIMIT 1"
    ).fetchone()
    conn.close()
    change_source(
        runs_db,
        ("UPDATE step_links SET entity_id = 'page_moved' WHERE id = ?", (link_id,)),
        (
            "INSERT INTO step_links VALUES ('new-link', ?, 'affected', 'table', 't_new', 'x-1', "
            "'2027-01-01T00:00:00.000Z')",
            (step_id,),
        ),
        ("UPDATE steps SET entity_type = 'view', entity_id = 'v_new' WHERE id = ?", (step_id,)),
        ("UPDATE runs SET updated_at = ? WHERE id = ?", (UPDATED, run_id)),
    )
    assert len(ingest_paths([runs_db]).run_ids()) == 1
    assert_read_model_is_the_recount()
    assert EntityCounter.objects.get(entity_type="table", entity_id="t_new").links_affected == 1
    assert EntityCounter.objects.get(entity_type="view", entity_id="v_new").subjects == 1


def test_the_delete_button_takes_the_runs_entities_off(client, samples):
    ingest_paths([samples])
    run = Run.objects.filter(link_count__gt=0).order_by("pk").first()
    response = client.post(reverse("traces:run-delete", args=[run.pk]))
    assert response.status_code in (302, 303)
    assert_read_model_is_the_recount()


def test_deleting_runs_one_by_one_keeps_the_others_figures_and_bounds(samples):
    ingest_paths([samples])
    for run in Run.objects.order_by("pk")[::2]:
        store.delete_runs([run.pk])
        assert_read_model_is_the_recount()


def test_deleting_every_run_empties_the_read_model(samples):
    ingest_paths([samples])
    store.delete_runs(list(Run.objects.values_list("pk", flat=True)))
    assert not EntityCounter.objects.exists() and not EntityTypeCounter.objects.exists()


def test_prune_takes_the_pruned_runs_entities_off(runs_db):
    ingest_paths([runs_db])
    gone = list(Run.objects.filter(link_count__gt=0).order_by("started_at")[:2])
    delete_source_runs(runs_db, [run.external_id for run in gone])
    ingest_paths([runs_db])  # kept, marked as having left their source
    assert_read_model_is_the_recount()
    call_command("prune", "--left-source")
    assert not Run.objects.filter(pk__in=[run.pk for run in gone]).exists()
    assert_read_model_is_the_recount()


def test_a_source_that_mirrors_deletions_takes_their_entities_off(runs_db):
    source = TraceSource.objects.create(path=str(runs_db.parent), mirror_deletions=True)
    ingest_paths([runs_db], source=source)
    gone = list(Run.objects.filter(link_count__gt=0).order_by("started_at")[:2])
    before = sum(c.links for c in EntityCounter.objects.all())
    delete_source_runs(runs_db, [run.external_id for run in gone])
    ingest_paths([runs_db], source=source)
    assert_read_model_is_the_recount()
    assert sum(c.links for c in EntityCounter.objects.all()) < before


# --- an entity's lists, newest first on the stored time --------------------------------------


def walk(page_of) -> list[int]:
    """Every id of a keyset-paged list, forwards."""
    ids, cursor = [], None
    while True:
        page = page_of({"after": cursor, "subject_after": cursor})
        ids.extend(row.pk for row in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return ids


def test_links_at_one_time_page_by_id_without_loss_or_repeat():
    run = make_runs(1)[0]
    steps = make_steps(run, 130)
    links = [
        EntityLink(step=step, run=run, link_type="input", entity_type="order", entity_id="o1",
                   created_at=BASE_TIME if i % 2 else None)
        for i, step in enumerate(steps)
    ]  # fmt: skip
    EntityLink.objects.bulk_create(links)
    count_entities()
    ids = walk(lambda cursors: links_page("order", "o1", cursors))
    times = dict(EntityLink.objects.values_list("id", "seen_at"))
    assert sorted(ids) == sorted(link.pk for link in links) and len(set(ids)) == 130
    assert ids == sorted(ids, key=lambda pk: (times[pk], pk), reverse=True)


def test_subject_steps_at_one_time_page_by_id_without_loss_or_repeat():
    run = make_runs(1)[0]
    steps = make_steps(run, 120)
    Step.objects.filter(run=run).update(entity_type="order", entity_id="o1", started_at=BASE_TIME)
    count_entities()
    ids = walk(lambda cursors: subjects_page("order", "o1", cursors))
    assert ids == sorted((step.pk for step in steps), reverse=True)


def _linked_run(external_id: str, fingerprint: str, entity_ids: list[str]) -> RunRecord:
    """A run whose links reach `entity_ids` in several ways: two links of one step to
    one entity, links without a time, external ids that differ by case (the
    database's collation, not Python's order, picks the greatest)."""
    steps = [
        StepRecord(key="a", started_at=BASE_TIME, entity_type="job", entity_id="j1"),
        StepRecord(key="b", parent_key="a", entity_type="job", entity_id="j1"),
    ]
    links = []
    for number, entity_id in enumerate(entity_ids):
        for link_type, outside_id in (("input", "B-1"), ("input", "a-2"), ("queue", "")):
            links.append(
                LinkRecord(step_key="ab"[number % 2], link_type=link_type, entity_type="table",
                           entity_id=entity_id, external_id=outside_id)
            )  # fmt: skip
        when = BASE_TIME + timedelta(hours=number)
        links.append(LinkRecord(step_key="b", link_type="output", entity_type="file",
                                entity_id="f1", created_at=when))  # fmt: skip
    return RunRecord(format="runs", external_id=external_id, started_at=BASE_TIME,
                     fingerprint=fingerprint, steps=steps, links=links)  # fmt: skip


def test_runs_gathered_in_one_file_add_up_to_the_recount():
    """The store gathers a file's entities in memory and writes them once; a run the
    file gives twice (its first write's figures applied before they are taken off)
    and runs sharing entities still add up to what the rows say."""
    index = store.RunIndex()
    with transaction.atomic():
        store.write_run(_linked_run("r1", "v1", ["t1", "t2"]), source_file=None, origin="o",
                        index=index)  # fmt: skip
        store.write_run(_linked_run("r2", "v1", ["t2", "t3"]), source_file=None, origin="o",
                        index=index)  # fmt: skip
        assert not EntityCounter.objects.exists()  # gathered, not yet written
        store.write_run(_linked_run("r1", "v2", ["t3"]), source_file=None, origin="o",
                        index=index)  # fmt: skip
        index.settle()
    assert_read_model_is_the_recount()
    assert EntityCounter.objects.get(entity_type="table", entity_id="t3").runs == 2
    assert EntityCounter.objects.get(entity_type="job", entity_id="j1").subjects == 4
