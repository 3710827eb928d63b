"""The step search finds steps by the values of their attributes and input (issue 15),
says truthfully where it found them, and keeps its index right through ingest,
update, re-sync and delete on SQLite (FTS5) and PostgreSQL (the stored vector)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from tests.factories import make_runs, make_steps
from traces.ingest.loader import ingest_paths
from traces.ingest.store import delete_runs
from traces.models import Run, Step
from traces.queries import find as found
from traces.search import index
from traces.search.query import COUNT_CAP, _matching_ids, search, tokens_of, value_words

pytestmark = pytest.mark.django_db
URL = reverse("traces:search")


def _index(run: Run) -> None:
    """What the store does when a file settles (SQLite's step index; PostgreSQL's
    trigger has done it already)."""
    with connection.cursor() as cursor:
        index.index_runs(cursor, [run.pk])


def _holds(texts, word: str) -> bool:
    tokens, phrase = tokens_of(" ".join(texts)), tokens_of(word)
    return any(tokens[at : at + len(phrase)] == phrase for at in range(len(tokens)))


def _scan(word: str, *, whole: bool) -> set[int]:
    """The steps holding `word` as the index reads them, found by reading every step.
    `whole`: in any of their values; else only in values the index surely holds on
    both databases (a step whose values are short: past VALUE_CHARS of text, the
    two walk a JSON value's keys in their own orders)."""
    rows = Step.objects.values_list("pk", "key", "name", "type", "error", "attributes", "input")
    found = set()
    for pk, key, name, type_, error, attributes, input_ in rows:
        if _holds([key, name, type_, error[: index.INDEXED_CHARS]], word):
            found.add(pk)
        for value in (attributes, input_):
            words = value_words(value)
            short = len(" ".join(words)) * 3 < index.VALUE_CHARS
            if (whole or short) and _holds(words, word):
                found.add(pk)
    return found


def _searched(word: str) -> set[int]:
    ids, matches = _matching_ids(index.STEPS, [word])
    assert matches <= COUNT_CAP
    if matches > len(ids):  # PostgreSQL reads only the newest shown ones
        pytest.skip("more matches than shown")
    return set(ids)


@pytest.fixture
def carried():
    run = make_runs(1)[0]
    steps = make_steps(run, 4)
    _index(run)  # then the updates: the update triggers index the new values
    Step.objects.filter(pk=steps[0].pk).update(
        attributes={"customer": "cus_9Zq81x", "tags": ["blue-whale", 42]}
    )
    Step.objects.filter(pk=steps[1].pk).update(input={"actor": "user:ops_erin@acme.io"})
    Step.objects.filter(pk=steps[2].pk).update(
        input={"note": 'line one\nsecond "line"', "flag": True}, name="cus_9Zq81x"
    )
    Step.objects.filter(pk=steps[3].pk).update(attributes={"onlyakeyzz": None})
    return steps


def test_an_attribute_value_finds_its_step_and_says_so(carried):
    results = search("cus_9Zq81x")
    assert {step.pk for step in results.steps.items} == {carried[0].pk, carried[2].pk}
    places = {step.pk: step.matched_in for step in results.steps.items}
    assert places == {carried[0].pk: "attributes", carried[2].pk: "name"}
    assert _searched("blue-whale") == {carried[0].pk}
    assert _searched("42") == {carried[0].pk}


def test_an_input_value_finds_its_step_and_says_so(carried):
    results = search("ops_erin@acme.io")
    assert [(step.pk, step.matched_in) for step in results.steps.items] == [
        (carried[1].pk, "input")
    ]
    # An escaped newline and quotes split words as the text does (no `nsecond`).
    assert _searched("second") == {carried[2].pk}
    assert _searched('"line"') == {carried[2].pk}


def test_a_value_at_the_start_of_a_long_input_is_said_to_be_in_the_input(carried):
    """An input longer than the head the page reads (4 times VALUE_CHARS) is cut, so its
    words come from the cut text: the workflow sample's 4 KiB inputs said "attributes"
    for the customer id at their start (the cut text's words were the `:{`, `:[{`
    between its strings)."""
    catalog = [{"name": f"Item {n}", "sku": f"SKU-{n}", "stock": n} for n in range(400)]
    long_input = {"body": {"customer_id": "cus_77long", "currency": "EUR"}, "catalog": catalog}
    Step.objects.filter(pk=carried[3].pk).update(input=long_input)  # re-indexed on update
    results = search("cus_77long")
    assert [(step.pk, step.matched_in) for step in results.steps.items] == [
        (carried[3].pk, "input")
    ]


def test_keys_booleans_and_nulls_are_not_searched(carried):
    for word in ("customer", "actor", "onlyakeyzz", "true", "flag"):
        assert _searched(word) == set(), word


def test_an_update_of_the_values_moves_the_step_in_the_index(carried):
    Step.objects.filter(pk=carried[0].pk).update(attributes={"customer": "cus_NEWVALUE7"})
    assert _searched("cus_9Zq81x") == {carried[2].pk}
    assert _searched("cus_NEWVALUE7") == {carried[0].pk}
    Step.objects.filter(pk=carried[1].pk).delete()
    assert _searched("ops_erin") == set()


def test_find_in_a_run_finds_the_values_too(carried):
    run_id = carried[0].run_id
    assert found.count(run_id, found.parse("blue-whale")) == (1, False)
    assert found.count(run_id, found.parse("ops_erin@acme.io")) == (1, False)


def test_the_samples_values_are_found_as_a_scan_finds_them(samples):
    """Every database finds the same steps for the same words: those a scan of the
    steps' key, name, type, error and values finds (after ingest and after a delete)."""
    ingest_paths([samples])
    words = _sample_words()
    assert len(words) >= 5 and sum(bool(_scan(word, whole=False)) for word in words) >= 5
    for _ in range(2):
        for word in words:
            assert _scan(word, whole=False) <= _searched(word) <= _scan(word, whole=True), word
        delete_runs(list(Run.objects.order_by("pk").values_list("pk", flat=True))[:5])


def _sample_words() -> list[str]:
    """Some of the samples' input and attribute values: ids, names, e-mails."""
    chosen: list[str] = []
    for attributes, input_ in Step.objects.order_by("pk").values_list("attributes", "input"):
        for value in value_words([attributes, input_]):
            wordlike = any(c.isalpha() for c in value) and " " not in value
            if 6 <= len(value) <= 40 and wordlike and value not in chosen:
                chosen.append(value)
    return chosen[:: max(len(chosen) // 12, 1)][:12]


def test_the_page_shows_where_each_step_matched(client, carried):
    html = client.get(URL, {"q": "ops_erin@acme.io", "jump": "no"}).content.decode()
    assert ">input<" in html


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_stored_vector_is_what_the_migration_fills(carried):
    """PostgreSQL: the trigger's vector (at insert, at update) is the one the
    migration's batched fill computes for rows written before it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, search_doc::text FROM traces_step ORDER BY id")
        written = cursor.fetchall()
        assert all(doc is not None for _, doc in written)
        cursor.execute("UPDATE traces_step SET search_doc = NULL")
        first, last = written[0][0], written[-1][0]
        cursor.execute(index.pg_column_fill(index.STEPS, first, (first + last) // 2))
        cursor.execute(index.pg_column_fill(index.STEPS, (first + last) // 2 + 1, last))
        cursor.execute("SELECT id, search_doc::text FROM traces_step ORDER BY id")
        assert cursor.fetchall() == written


@pytest.mark.skipif("connection.vendor != 'sqlite'")
def test_the_store_indexes_a_files_steps_in_id_order():
    """SQLite's FTS5 gathers new entries in memory while their rowids ascend and
    writes them out at the statement's end; a rowid lower than the last makes it
    write out what it holds first. The store's INSERT ... SELECT reads the steps
    through whichever run-led index the planner picks (by duration, by key), so it
    asks for id order: out of order, nearly every step became a segment of its own
    to merge (the traceos quick set's index cost 0.68 s of CPU instead of 0.10 s)."""
    run = make_runs(1)[0]
    steps = make_steps(run, 50)
    # Durations and keys in the reverse of the ids' order.
    for step in steps:
        step.duration_ms = 1_000.0 - step.seq
        step.key = f"k{1_000 - step.seq}"
    Step.objects.bulk_update(steps, ["duration_ms", "key"])
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM traces_step_search")  # the update trigger's entries
    statements = []

    def record(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        _index(run)
    [(sql, params)] = [(sql, params) for sql, params in statements if "traces_step_search" in sql]
    with connection.cursor() as cursor:
        cursor.execute(sql[sql.index("SELECT") :], params)
        ids = [row[0] for row in cursor.fetchall()]
    assert ids == sorted(step.pk for step in steps)
