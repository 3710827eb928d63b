"""One search for everything: /search/?q= and /api/search over the samples."""

import pytest
from django.db import connection
from django.db.models import Q
from django.urls import reverse

from tests.factories import make_runs, make_steps
from traces.ingest.loader import ingest_paths
from traces.ingest.store import delete_runs
from traces.models import EntityCounter, Run, Step
from traces.search.index import RUNS, STEPS, index_runs
from traces.search.query import search

pytestmark = pytest.mark.django_db
URL = reverse("traces:search")


@pytest.fixture
def loaded(samples):
    ingest_paths([samples])


def listed(client, q: str) -> dict:
    response = client.get(URL, {"q": q, "jump": "no"})
    assert response.status_code == 200
    results = response.context["results"]
    return {
        "runs": {run.pk for run in results.runs.items},
        "steps": {step.pk for step in results.steps.items},
        "entities": {(e.entity_type, e.entity_id) for e in results.entities.items},
    }


def test_an_actor_finds_its_runs(client, loaded):
    actor = "user:usr_ops_67ii"
    expected = set(Run.objects.filter(actor=actor).values_list("pk", flat=True))
    assert expected and listed(client, actor)["runs"] == expected


def test_an_error_word_finds_the_failed_steps_and_says_where(client, loaded):
    expected = set(Step.objects.filter(error__icontains="unreachable").values_list("pk", flat=True))
    response = client.get(URL, {"q": "unreachable"})
    results = response.context["results"]
    assert {step.pk for step in results.steps.items} == expected
    assert all("error" in step.matched_in for step in results.steps.items)
    assert f"{len(expected)} step" in response.content.decode()


def test_an_attribute_value_finds_its_runs(client, loaded):
    expected = set(
        Run.objects.filter(attributes__workflowId="etl-nightly").values_list("pk", flat=True)
    )
    assert expected and expected <= listed(client, "etl-nightly")["runs"]


def test_every_word_must_match(client, loaded):
    one = listed(client, "unreachable")["steps"]
    assert listed(client, "cache unreachable")["steps"] == one
    assert listed(client, "unreachable nosuchwordanywhere")["steps"] == set()


@pytest.mark.parametrize("kind", ["run", "step", "entity", "typed entity", "run number"])
def test_an_exact_id_opens_its_page(client, loaded, kind):
    run = Run.objects.filter(format="runs").order_by("pk").first()
    # A key no other step has (runs' step ids are ULIDs).
    step = Step.objects.filter(run=run).order_by("pk").last()
    assert Step.objects.filter(key=step.key).count() == 1
    query, page = {
        "run": (run.external_id, run.get_absolute_url()),
        "step": (step.key, step.get_absolute_url()),
        "entity": ("acc_main", reverse("traces:entity-detail", args=["account", "acc_main"])),
        "typed entity": (
            "account:acc_main",
            reverse("traces:entity-detail", args=["account", "acc_main"]),
        ),
        "run number": (str(run.pk), run.get_absolute_url()),
    }[kind]
    response = client.get(URL, {"q": query})
    assert response.status_code == 302 and response["Location"] == page


def test_an_entity_id_prefix_lists_the_entities(client, loaded):
    found = listed(client, "page_")["entities"]
    expected = set(
        EntityCounter.objects.filter(entity_id__startswith="page_").values_list(
            "entity_type", "entity_id"
        )
    )
    assert expected and found == expected


@pytest.fixture
def punctuation_blind_entity_ids(db):
    """On PostgreSQL, entity ids compared as a linguistic collation compares them:
    ICU with punctuation ignored (`a_b1` sorts among `ab...`), as en_US does. SQLite
    has no such collation: there the ids keep their byte order."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE COLLATION IF NOT EXISTS punct_blind "
                "(provider = icu, locale = 'und-u-ka-shifted')"
            )
            cursor.execute(
                "ALTER TABLE traces_entitycounter ALTER COLUMN entity_id "
                'TYPE varchar(500) COLLATE "punct_blind"'
            )


def test_an_entity_prefix_is_found_under_a_linguistic_collation(
    client, punctuation_blind_entity_ids
):
    # 1,500 ids that a punctuation-blind order interleaves with the prefix's range:
    # read in that order, the first 1,001 rows of the range hold no match.
    look_alikes = [EntityCounter(entity_type="order", entity_id=f"ab{n:05}") for n in range(1500)]
    wanted = [EntityCounter(entity_type="order", entity_id=f"a_b{n}x") for n in range(3)]
    EntityCounter.objects.bulk_create(look_alikes + wanted)
    assert listed(client, "a_b")["entities"] == {("order", f"a_b{n}x") for n in range(3)}
    assert listed(client, "order:a_b1")["entities"] == {("order", "a_b1x")}


def test_deleted_and_rewritten_rows_leave_the_index(client, loaded):
    actor = "user:usr_ops_67ii"
    runs = list(Run.objects.filter(actor=actor).values_list("pk", flat=True))
    delete_runs(runs)
    assert listed(client, actor)["runs"] == set()
    step = Step.objects.exclude(error="").first()
    Step.objects.filter(pk=step.pk).update(error="now a different failure: gremlins")
    assert step.pk not in listed(client, "unreachable")["steps"]
    assert listed(client, "gremlins")["steps"] == {step.pk}


def test_the_index_follows_a_file_read_again(client, tmp_path, samples):
    import json

    source = samples / "duckflux" / "json"
    files = sorted(source.glob("*.json"))
    target = tmp_path / files[0].name
    target.write_bytes(files[0].read_bytes())
    ingest_paths([target])
    (run,) = Run.objects.all()
    data = json.loads(target.read_text())
    data["workflowId"] = "renamed-by-the-writer"
    target.write_text(json.dumps(data))
    ingest_paths([target])
    assert run.pk in listed(client, "renamed-by-the-writer")["runs"]


def test_hostile_queries_are_escaped_and_never_fail(client, loaded):
    for query in [
        '"',
        "AND",
        "NOT OR",
        "*",
        'a"b',
        "<script>alert(1)</script>",
        "-",
        "(",
        "x" * 500,
    ]:
        response = client.get(URL, {"q": query, "jump": "no"})
        assert response.status_code == 200, query
        assert "<script>alert(1)</script>" not in response.content.decode()
    assert client.get(URL, {"q": "x" * 501}).status_code == 400


def test_a_query_with_nothing_to_match_says_so(client, loaded):
    html = " ".join(client.get(URL, {"q": "---"}).content.decode().split())
    assert "Nothing matches “<bdi>---</bdi>”." in html
    assert "has none" in html


def test_the_page_lists_each_kind_with_counts_and_links(client, loaded):
    response = client.get(URL, {"q": "sync_stripe", "jump": "no"})
    html = " ".join(response.content.decode().split())
    results = response.context["results"]
    assert results.runs.count >= 1
    for run in results.runs.items:
        assert f'href="{run.get_absolute_url()}"' in html
    assert f"{results.runs.count} run" in html


def test_the_query_count_is_flat(client, loaded, django_assert_max_num_queries):
    # PostgreSQL: + the planner settings of the run and step searches, each in a
    # savepoint, and each one's newest id first (the top of search.newest's walk); the
    # exact-id lookup's key probe takes the steps' search's newest ids (was 23, when it
    # walked the buckets again).
    with django_assert_max_num_queries(9 if connection.vendor == "sqlite" else 17):
        client.get(URL, {"q": "sync", "jump": "no"})


def test_the_api_answers_the_same_as_the_page(client, loaded):
    page = client.get(URL, {"q": "sync_stripe", "jump": "no"}).context["results"]
    answer = client.get("/api/search", {"q": "sync_stripe"})
    assert answer.status_code == 200
    body = answer.json()
    assert [run["id"] for run in body["runs"]] == [run.pk for run in page.runs.items]
    assert [step["id"] for step in body["steps"]] == [step.pk for step in page.steps.items]
    assert body["counts"] == {
        "runs": page.runs.count,
        "steps": page.steps.count,
        "entities": page.entities.count,
    }
    assert body["capped"] == {"runs": 0, "steps": 0, "entities": 0}
    assert body["exact"] is None


def test_the_api_names_the_exact_match_and_refuses_a_bad_query(client, loaded):
    body = client.get("/api/search", {"q": "account:acc_main"}).json()
    assert body["exact"] == {
        "kind": "entity",
        "url": reverse("traces:entity-detail", args=["account", "acc_main"]),
    }
    assert [e["entity_id"] for e in body["entities"]] == ["acc_main"]
    too_long = client.get("/api/search", {"q": "x" * 501})
    assert too_long.status_code == 400 and "q" in too_long.json()["errors"]


def test_counts_stop_at_the_cap(client, settings):
    from tests.factories import make_runs

    make_runs(1005, name="capped everywhere")
    body = client.get("/api/search", {"q": "capped"}).json()
    assert body["counts"]["runs"] == 1000 and body["capped"]["runs"] == 1
    assert len(body["runs"]) == 20
    html = " ".join(client.get(URL, {"q": "capped"}).content.decode().split())
    assert "1,000+ runs" in html and "the newest 20" in html


def _indexed_steps() -> dict:

    with connection.cursor() as cursor:
        cursor.execute("SELECT rowid, key, name, type, error FROM traces_step_search")
        return {row[0]: row[1:] for row in cursor.fetchall()}


def _steps_as_indexed() -> dict:
    from traces.search.index import INDEXED_CHARS

    rows = Step.objects.values_list("pk", "key", "name", "type", "error")
    return {pk: (key, name, type_, error[:INDEXED_CHARS]) for pk, key, name, type_, error in rows}


def _assert_index_is_the_steps(client) -> None:
    """Word by word, the search finds exactly the steps a scan finds; on SQLite the
    FTS table also holds exactly the steps' indexed text."""

    if connection.vendor == "sqlite":
        assert _indexed_steps() == _steps_as_indexed()
    for word in ("unreachable", "503", "fetch_charges"):
        scan = Step.objects.filter(Q(error__icontains=word) | Q(name=word))
        assert listed(client, word)["steps"] | set() == set(scan.values_list("pk", flat=True)[:20])


def test_the_step_index_follows_ingest_delete_and_rows_written_by_hand(client, samples):
    from tests.factories import make_steps

    ingest_paths([samples])
    _assert_index_is_the_steps(client)
    delete_runs(list(Run.objects.filter(format="runs").values_list("pk", flat=True))[:3])
    _assert_index_is_the_steps(client)
    # A step written by other means than the store, then deleted, leaves the index whole.
    run = Run.objects.filter(format="traceos").first()
    extra = make_steps(run, 2, status="failed", error="written by hand")
    Step.objects.filter(pk__in=[step.pk for step in extra]).delete()
    _assert_index_is_the_steps(client)


def test_every_search_trigger_survives_the_migrations_that_rebuild_tables():
    """Django alters a SQLite table by rebuilding it, which drops its triggers;
    post_migrate puts them back (the test database was made by `migrate`)."""

    from traces.search.index import TABLES, sqlite_triggers

    if connection.vendor != "sqlite":
        assert {searched.gin for searched in TABLES} <= set(_pg_indexes())
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        triggers = {row[0] for row in cursor.fetchall()}
    expected = {
        statement.split()[5] for searched in TABLES for statement in sqlite_triggers(searched)
    }
    assert len(expected) == 7 and expected <= triggers


def _pg_indexes() -> list[str]:

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename LIKE 'traces_%%'")
        return [row[0] for row in cursor.fetchall()]


# --- newest first, wherever the matches are (PostgreSQL: search.newest's id buckets) ------

# Ids far apart, over several of the PostgreSQL index's coarse buckets (65,536 ids) and
# fine ones (1,024): the oldest match, a dense block past the count's cap in bucket 0,
# sparse matches in buckets 2 and 4, and newer steps without the word in bucket 5.
OLDEST = 7
DENSE = range(5_000, 6_250)
SPARSE = (140_000, 140_700, 141_300, 300_000, 300_001)
NEWER_WITHOUT = (330_000, 330_001)


def _spread_steps() -> list[int]:
    """Steps at those ids, the matching ones holding `zebra_common`, the oldest and
    the sparse ones also `zebra_rare`; returns the ids holding `zebra_common`."""
    from tests.factories import make_runs, make_steps
    from traces.search.index import index_runs

    matching = [OLDEST, *DENSE, *SPARSE]
    rare = {OLDEST, *SPARSE}
    targets = [*matching, *NEWER_WITHOUT]
    (run,) = make_runs(1, name="spread")

    def error(position: int) -> str:
        if position >= len(matching):
            return "nothing to see"
        return "zebra_common zebra_rare" if matching[position] in rare else "zebra_common"

    steps = make_steps(run, len(targets), error=error)
    with connection.cursor() as cursor:
        # Out of the way first (the targets may be ids the steps have), then into place.
        cursor.executemany(
            "UPDATE traces_step SET id = %s WHERE id = %s",
            [(-step.pk, step.pk) for step in steps],
        )
        cursor.executemany(
            "UPDATE traces_step SET id = %s WHERE id = %s",
            [(target, -step.pk) for step, target in zip(steps, targets, strict=True)],
        )
        index_runs(cursor, [run.pk])  # SQLite's index of the steps (PostgreSQL's keeps itself)
    return matching


def test_a_common_word_lists_its_newest_matches_over_id_buckets():
    from traces.search.query import COUNT_CAP, SHOWN, search

    matching = _spread_steps()
    found = search("zebra_common").steps
    assert [step.pk for step in found.items] == sorted(matching, reverse=True)[:SHOWN]
    assert (found.count, found.capped) == (COUNT_CAP, True)
    rare = search("zebra_rare").steps
    assert [step.pk for step in rare.items] == sorted([OLDEST, *SPARSE], reverse=True)
    assert (rare.count, rare.capped) == (len(SPARSE) + 1, False)


def test_a_word_s_newest_matches_read_a_bucket_at_a_time_on_postgres():
    """The newest KEY_PROBE of 1,256 matches: the sparse buckets' together, then the
    dense bucket's fine buckets newest first, exactly those; the walk's count stops
    past the cap."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's id buckets")
    from traces.search.index import STEPS
    from traces.search.newest import newest_matches

    matching = sorted(_spread_steps(), reverse=True)
    with connection.cursor() as cursor:
        for limit in (1, 5, 6, 300, 1000):
            ids, count = newest_matches(cursor, STEPS, ["zebra_common"], limit, 1000)
            assert ids == matching[:limit] and count > 1000, limit
        ids, count = newest_matches(cursor, STEPS, ["zebra_common"], 20, 5_000)
        assert ids == matching[:20] and count == len(matching)
        assert newest_matches(cursor, STEPS, ["no_such_zebra"], 20, 1000) == ([], 0)


def test_a_word_s_newest_matches_follow_deletes_and_updates_across_buckets():
    """The newest matches and their count after the newest bucket holding the word
    loses its matches and a newer bucket's step takes the word (PostgreSQL: the keys
    of each id bucket in the GIN index, kept by the database itself)."""
    from traces.search.query import COUNT_CAP, SHOWN, search

    matching = sorted(_spread_steps(), reverse=True)
    Step.objects.filter(pk__in=SPARSE[3:]).delete()  # bucket 4's
    matching = [pk for pk in matching if pk not in SPARSE[3:]]
    found = search("zebra_common").steps
    assert [step.pk for step in found.items] == matching[:SHOWN]
    assert (found.count, found.capped) == (COUNT_CAP, True)
    rare = search("zebra_rare").steps
    assert [step.pk for step in rare.items] == [*SPARSE[2::-1], OLDEST]
    assert (rare.count, rare.capped) == (4, False)
    # Bucket 5's step, without the word until now.
    Step.objects.filter(pk=NEWER_WITHOUT[0]).update(error="zebra_rare at last")
    rare = search("zebra_rare").steps
    assert [step.pk for step in rare.items] == [NEWER_WITHOUT[0], *SPARSE[2::-1], OLDEST]
    assert search("zebra_common").steps.items[0].pk == matching[0]


def test_a_rewritten_run_is_found_under_its_new_ids_and_a_deleted_one_not_at_all(runs_db):
    """A re-sync writes a changed run's steps again, under new ids: the search finds
    the new rows, not the old; then the run deleted, nothing."""
    import sqlite3

    from traces.search.query import search

    ingest_paths([runs_db])
    running = Run.objects.get(format="runs", status="running")
    old = set(Step.objects.filter(run=running).values_list("pk", flat=True))
    conn = sqlite3.connect(runs_db)
    conn.execute(
        "UPDATE steps SET error = 'zebra_marker went wrong', "
        "updated_at = '2026-03-02T09:00:00.000Z' WHERE run_id = ?",
        (running.external_id,),
    )
    conn.execute(
        "UPDATE runs SET updated_at = '2026-03-02T09:00:00.000Z' WHERE id = ?",
        (running.external_id,),
    )
    conn.commit()
    conn.close()
    assert ingest_paths([runs_db]).run_ids() == [running.pk]
    new = set(Step.objects.filter(run=running).values_list("pk", flat=True))
    assert new and not new & old
    found = search("zebra_marker").steps
    assert {step.pk for step in found.items} == new and found.count == len(new)
    delete_runs([running.pk])
    assert search("zebra_marker").steps.items == []


def test_a_long_word_is_found_by_its_entry_s_start_and_the_vector():
    """PostgreSQL's index holds a word's first WORD_CHARS characters (a lexeme has 2,047
    bytes at most): two long words alike in their first WORD_CHARS share an entry, and
    the stored vector tells them apart; a find's prefix of one finds both."""
    from tests.factories import make_runs, make_steps
    from traces.queries import find as found
    from traces.search.index import WORD_CHARS
    from traces.search.query import search

    start = "q" * WORD_CHARS
    words = [start + "alpha", start + "beta", "r" * 2_040]
    (run,) = make_runs(1, name="long words")
    steps = make_steps(run, 3, error=lambda position: f"held {words[position]} here")
    index_runs_of(run)
    for step, word in zip(steps, words, strict=True):
        assert [s.pk for s in search(word).steps.items] == [step.pk], word[-5:]
    # Words as long as a key (or its start) are not the long words: their vectors say so.
    assert search(start).steps.items == [] and search(start[:-2]).steps.items == []
    find = found.parse(start[:50] + "*")
    assert found.count(run.pk, find) == (2, False)
    assert found.few_matches(run.pk, find)
    window = found.window(run.pk, find, counted=(2, False))
    assert {step.pk for step in window.items} == {steps[0].pk, steps[1].pk}


def index_runs_of(run) -> None:
    """SQLite's index of a run's steps written by hand (PostgreSQL's keeps itself)."""
    from traces.search.index import index_runs

    with connection.cursor() as cursor:
        index_runs(cursor, [run.pk])


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_row_s_bucketed_words_are_its_words_in_its_id_bucket():
    from traces.search.index import BUCKETED, BUCKETED_EXACT, BUCKETED_QUERY, WORD_CHARS

    bucket = 3 * 65_536 + 5  # in coarse bucket 3
    long = "x" * (WORD_CHARS + 100)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {BUCKETED}(%s, to_tsvector('simple', %s))::text, "
            f"{BUCKETED}(%s, NULL)::text, {BUCKETED}(%s, ''::tsvector)::text",
            [bucket, "Fetch charges " + long, bucket, bucket],
        )
        assert cursor.fetchone() == (f"'3_charges' '3_fetch' '3_{'x' * WORD_CHARS}'", None, "")
        # Rewritten from the vector's text, or word by word when its words are long:
        # the same keys, quotes and backslashes too.
        vectors = ["'a' 'b'", "'it''s' 'a\\\\b' 'c'", "'a':1 'b':2,3",
                   f"'{'z' * 300}' '{'y' * 300}'"]  # fmt: skip
        cursor.execute(
            f"SELECT {BUCKETED}(-70000, v::tsvector)::text, "
            f"{BUCKETED}_cut(-70000, v::tsvector)::text FROM unnest(%s::text[]) AS v",
            [vectors],
        )
        rows = cursor.fetchall()
        assert all(fast == cut for fast, cut in rows)
        assert rows[1][0] == "'-2_a\\\\b' '-2_c' '-2_it''s'"
        cursor.execute(
            f"SELECT {BUCKETED_QUERY}(7, to_tsquery('simple', %s))::text, "
            f"{BUCKETED_QUERY}(7, phraseto_tsquery('simple', %s))::text, "
            f"{BUCKETED_QUERY}_cut(7, to_tsquery('simple', %s))::text",
            ["(fetch <-> charges) & (abc:*)", "cus 000123 " + "y" * (WORD_CHARS + 50),
             "(fetch <-> charges) & (abc:*)"],
        )  # fmt: skip
        assert cursor.fetchone() == (
            "'7_fetch' & '7_charges' & '7_abc':*",
            f"'7_cus' & '7_000123' & '7_{'y' * WORD_CHARS}'",
            "'7_fetch' & '7_charges' & '7_abc':*",
        )
        # The keys are the answer to words and prefixes shorter than a key, not to a
        # phrase (the words' order) nor a word as long as a key (a longer one's start).
        cursor.execute(
            f"SELECT {BUCKETED_EXACT}(to_tsquery('simple', q)) FROM unnest(%s::text[]) AS q",
            [["a & b:*", "a <-> b", "a" * (WORD_CHARS - 2), "a" * (WORD_CHARS - 1), "!a"]],
        )
        assert [row[0] for row in cursor.fetchall()] == [True, False, True, False, False]


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_every_search_index_keeps_its_pending_list_short():
    """Each scan of a GIN index reads its pending list whole: 4 MB of new entries not
    merged yet cost a common word's search ~40 ms at 1 M steps (index.PENDING)."""
    from traces.search.index import PENDING, TABLES

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s)",
            [[searched.gin for searched in TABLES]],
        )
        options = dict(cursor.fetchall())
    assert options == {searched.gin: [PENDING.replace(" ", "")] for searched in TABLES}


def test_a_word_with_no_lexeme_to_postgresql_still_has_to_match():
    """`½` is a word to the search (a digit to Python, a token to FTS5) and is in no
    step: "zebra_review ½" matches nothing, as each word is required. PostgreSQL makes
    it no lexeme at all, and `&&` of an empty query is the other side: every
    zebra_review step was found."""
    (run,) = make_runs(1, name="lexemes")
    make_steps(run, 3, error=lambda position: "zebra_review went wrong")
    with connection.cursor() as cursor:
        index_runs(cursor, [run.pk])
    assert len(search("zebra_review").steps.items) == 3
    found = search("zebra_review ½").steps
    assert (found.items, found.count) == ([], 0)


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's functions")
def test_the_search_indexes_are_read_by_a_session_with_the_maintenance_search_path():
    """pg_restore builds indexes with an empty search_path, and PostgreSQL 17 runs
    ANALYZE, VACUUM and REINDEX with pg_catalog's alone: the bucketed words' functions
    must not name each other through it. A new session, where no index expression is
    cached yet."""
    import psycopg

    params = connection.get_connection_params()
    for key in ("cursor_factory", "context"):
        params.pop(key, None)
    with psycopg.connect(**params, autocommit=True) as fresh:
        fresh.execute("SET search_path = pg_catalog, pg_temp")
        for searched in (RUNS, STEPS):
            fresh.execute(f"REINDEX INDEX public.{searched.gin}")
            fresh.execute(f"ANALYZE public.{searched.table}")
