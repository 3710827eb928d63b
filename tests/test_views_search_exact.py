"""An exact id jumps straight there, whatever the full-text ranking: a run's external
id or number, a step's key (or RUN/KEY), an entity's type:id, bare id or external
id; several exact matches are listed first, marked exact."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import make_runs, make_steps
from traces.ingest.loader import ingest_paths
from traces.models import EntityCounter, Run, Step
from traces.search.index import index_runs

pytestmark = pytest.mark.django_db
URL = reverse("traces:search")


def _index_steps(*runs: Run) -> None:
    """Steps written by the factory are indexed as the store indexes a file's runs."""
    with connection.cursor() as cursor:
        index_runs(cursor, [run.pk for run in runs])


def _buried_run(external_id: str, crowd: int = 30) -> Run:
    """The run `external_id` written first, then `crowd` newer runs whose names hold
    the same words: a full-text search lists only the newest 20, not it."""
    (run,) = make_runs(1, name="the one")
    Run.objects.filter(pk=run.pk).update(external_id=external_id)
    make_runs(crowd, name=f"retry of {external_id.replace('-', ' ')}")
    run.refresh_from_db()
    return run


def _buried_step(key: str, crowd: int = 30) -> Step:
    (run,) = make_runs(1, name="payments")
    steps = make_steps(run, crowd + 1)
    _index_steps(run)  # then the index follows the updates
    Step.objects.filter(pk=steps[0].pk).update(key=key, name="charge")
    others = [step.pk for step in steps[1:]]
    Step.objects.filter(pk__in=others).update(name=f"retry {key.replace('-', ' ')}")
    return Step.objects.get(pk=steps[0].pk)


def test_a_run_id_past_the_first_20_matches_opens_the_run(client):
    run = _buried_run("order-4711")
    listed = client.get(URL, {"q": "order-4711", "jump": "no"}).context["results"]
    assert listed.runs.count == 31
    assert listed.runs.items[0].pk == run.pk and listed.runs.items[0].exact
    response = client.get(URL, {"q": "order-4711"})
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()


def test_a_step_key_past_the_first_20_matches_opens_the_step(client):
    step = _buried_step("pay-4711")
    listed = client.get(URL, {"q": "pay-4711", "jump": "no"}).context["results"]
    assert listed.steps.count == 31 and listed.steps.items[0].pk == step.pk
    response = client.get(URL, {"q": "pay-4711"})
    assert response.status_code == 302 and response["Location"] == step.get_absolute_url()


def test_a_key_is_probed_among_the_newest_steps_holding_it_read_once(client, monkeypatch):
    """The key's step is the oldest of 31 holding its words: found while the probe
    reads 31 of them, not 30. On PostgreSQL the list and the probe share one walk of
    the steps' id buckets (search.newest): one for the runs, one for the steps."""
    from traces.search import exact

    step = _buried_step("pay-4711")
    for probe, found in ((31, True), (30, False)):
        monkeypatch.setattr(exact, "KEY_PROBE", probe)
        said = []
        with connection.execute_wrapper(
            lambda run, sql, *rest, said=said: said.append(sql) or run(sql, *rest)
        ):
            results = client.get(URL, {"q": "pay-4711", "jump": "no"}).context["results"]
        assert (results.steps.count, results.steps.items[0].pk == step.pk) == (31, found)
        assert [match.pk for match in results.exact_matches] == ([step.pk] if found else [])
        walks = sum("WITH RECURSIVE walk" in sql for sql in said)
        assert walks == (2 if connection.vendor == "postgresql" else 0), said


def test_a_run_number_and_a_step_in_its_run(client):
    (run,) = make_runs(1)
    steps = make_steps(run, 3)
    _index_steps(run)
    assert client.get(URL, {"q": str(run.pk)})["Location"] == run.get_absolute_url()
    # Other scripts' digits are not a run's number.
    arabic = "".join(chr(0x0660 + int(digit)) for digit in str(run.pk))
    assert client.get(URL, {"q": arabic, "jump": "no"}).context["results"].exact is None
    for run_ref in (str(run.pk), run.external_id):
        response = client.get(URL, {"q": f"{run_ref}/{steps[2].key}"})
        assert response.status_code == 302, run_ref
        assert response["Location"] == steps[2].get_absolute_url()


def test_a_key_of_digits_alone_is_a_position_not_an_id(client):
    """Thousands of runs have a step `3`: the number names a run, not those steps."""
    runs = make_runs(3)
    for run in runs:
        make_steps(run, 1)
    _index_steps(*runs)
    Step.objects.filter(run__in=runs).update(key="3")
    results = client.get(URL, {"q": "3", "jump": "no"}).context["results"]
    assert all(found.__class__ is not Step for found in results.exact_matches)
    step = Step.objects.get(run=runs[1])
    response = client.get(URL, {"q": f"{runs[1].external_id}/3"})
    assert response["Location"] == step.get_absolute_url()


def test_entities_by_type_and_id_bare_id_and_external_id(client):
    crowd = [EntityCounter(entity_type="invoice", entity_id=f"inv_9{n:03}") for n in range(30)]
    one = EntityCounter(entity_type="invoice", entity_id="inv_9", external_id="in_1PXy")
    EntityCounter.objects.bulk_create([*crowd, one])
    page = reverse("traces:entity-detail", args=["invoice", "inv_9"])
    for query in ("invoice:inv_9", "inv_9", "in_1PXy"):
        response = client.get(URL, {"q": query})
        assert response.status_code == 302 and response["Location"] == page, query


def test_several_exact_matches_come_first_marked_exact(client):
    older = _buried_run("dup-42")
    (other,) = make_runs(1, format="workflow", name="the other")
    Run.objects.filter(pk=other.pk).update(external_id="dup-42")
    EntityCounter.objects.create(entity_type="order", entity_id="dup-42")
    response = client.get(URL, {"q": "dup-42"})
    assert response.status_code == 200
    results = response.context["results"]
    assert [run.pk for run in results.runs.items[:2]] == [other.pk, older.pk]
    assert all(run.exact for run in results.runs.items[:2])
    assert not getattr(results.runs.items[2], "exact", False)
    assert results.runs.count == 32 and len(results.runs.items) == 20
    html = " ".join(response.content.decode().split())
    assert "is exactly the id of 3 things" in html
    # One a row, and one in the notice that explains them.
    assert html.count('<span class="badge flag">exact</span>') == 3 + 1

    body = client.get("/api/search", {"q": "dup-42"}).json()
    assert body["exact"] is None
    assert [found["kind"] for found in body["exact_matches"]] == ["run", "run", "entity"]
    assert [run["id"] for run in body["runs"][:2]] == [other.pk, older.pk]


def test_the_api_names_an_exact_id_past_the_first_20(client):
    step = _buried_step("tx-99")
    body = client.get("/api/search", {"q": "tx-99"}).json()
    assert body["exact"] == {"kind": "step", "url": step.get_absolute_url()}
    assert body["exact_matches"] == [body["exact"]]
    assert body["steps"][0]["id"] == step.pk and body["counts"]["steps"] == 31


def test_no_exact_match_leaves_the_list_as_ranked(client):
    _buried_run("order-4711")
    results = client.get(URL, {"q": "order", "jump": "no"}).context["results"]
    assert results.exact is None and results.exact_matches == []
    assert [run.pk for run in results.runs.items] == sorted(
        (run.pk for run in results.runs.items), reverse=True
    )


def test_the_query_count_is_flat_in_matches(client):
    def queries(query: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            client.get(URL, {"q": query, "jump": "no"})
        return len(captured)

    _buried_run("few-1", crowd=2)
    _buried_run("many-1", crowd=60)
    _buried_step("fewkey-1", crowd=2)
    _buried_step("manykey-1", crowd=60)
    assert queries("few-1") == queries("many-1")
    assert queries("fewkey-1") == queries("manykey-1")


def test_every_sample_run_and_entity_id_is_found_exactly(client, samples):
    ingest_paths([samples])
    for run in Run.objects.all():
        response = client.get(URL, {"q": run.external_id})
        if response.status_code == 302:
            assert response["Location"] == run.get_absolute_url(), run.external_id
        else:  # the same id elsewhere: listed first, marked exact
            results = response.context["results"]
            assert run.pk in {found.pk for found in results.runs.items if found.exact}
    for entity in EntityCounter.objects.all()[:50]:
        results = client.get(
            URL, {"q": f"{entity.entity_type}:{entity.entity_id}", "jump": "no"}
        ).context["results"]
        assert (entity.entity_type, entity.entity_id) in {
            (found.entity_type, found.entity_id) for found in results.exact_matches
        }


def test_names_from_a_trace_are_isolated(client):
    (run,) = make_runs(1, name="<b>x</b> \u202etxt.exe")
    Run.objects.filter(pk=run.pk).update(actor="\u05d0\u05d1 actor", type="\u202enightly")
    steps = make_steps(run, 1, status="failed", error="\u202ebad <i>thing</i>")
    _index_steps(run)
    Step.objects.filter(pk=steps[0].pk).update(name="\u202estep txt.exe")
    html = client.get(URL, {"q": "txt", "jump": "no"}).content.decode()
    assert "<bdi>&lt;b&gt;x&lt;/b&gt; \u202etxt.exe</bdi>" in html
    assert "<bdi>\u05d0\u05d1 actor</bdi>" in html and "<bdi>\u202enightly</bdi>" in html
    assert "<bdi>\u202estep txt.exe</bdi>" in html
    assert "<bdi>\u202ebad &lt;i&gt;thing&lt;/i&gt;</bdi>" in html
    assert f"<bdi>{run.external_id}</bdi>" in html and "“<bdi>txt</bdi>”" in html


def _full_scans(plan: list[str]) -> list[str]:
    """Steps reading a whole table: PostgreSQL's Seq Scan, SQLite's SCAN of a table
    (not of the FTS5 index, a CTE or constant rows)."""
    tables = ("traces_run", "traces_step", "traces_entitycounter")
    scans = [step for step in plan if step.startswith("Seq Scan")]
    scans += [
        step
        for step in plan
        if step.startswith("SCAN ")
        and "VIRTUAL TABLE" not in step
        and step.split()[1] in (*tables, "r", "s")
    ]
    return scans


def test_the_lookup_reads_indexes_even_for_a_common_word(monkeypatch):
    """Half the steps hold the word: 1,000 steps, 50 times the probe (made 20 here; at
    1 M steps 221,229 hold `fetch_charges`, for a probe of 1,000). With the probe's LIMIT
    in the planner's sight, PostgreSQL read the steps table to find them, evaluating
    each row's tsvector, rather than the GIN index."""
    from tests.test_query_plans import plans_of
    from traces.search import exact

    monkeypatch.setattr(exact, "KEY_PROBE", 20)
    runs = make_runs(40)
    for index, run in enumerate(runs):
        make_steps(run, 50, error="fetch charges failed" if index % 2 == 0 else "")
    _index_steps(*runs)
    EntityCounter.objects.create(entity_type="customer", entity_id="fetch_charges")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    for query in ("fetch_charges", f"{runs[3].external_id}/s.7", str(runs[5].pk)):
        # Each part of the lookup is served by an index.
        plans = plans_of(lambda q=query: exact.exact_matches(q), dear=("seqscan",))
        lookup = next(steps for sql, steps in plans if "run_found" in sql)
        assert _full_scans(lookup) == [], (query, lookup)
    if connection.vendor == "postgresql":
        said = []
        with connection.execute_wrapper(
            lambda run, sql, *rest: said.append(sql) or run(sql, *rest)
        ):
            exact.exact_matches("fetch_charges")
        lookup = next(i for i, sql in enumerate(said) if "step_found" in sql)
        # The key's steps are the newest KEY_PROBE holding its words, read a bucket of
        # ids at a time (search.newest), not every step the GIN index gives.
        assert any("WITH RECURSIVE walk" in sql for sql in said[:lookup]), said
