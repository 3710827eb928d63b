"""The search's questions: which runs, steps and entities a query names.

A query is words; each word must appear (as a phrase of its tokens, so
`cus_000123` or `erin@acme.io` match as a whole) in one of the searched columns
of index.py. Runs and steps are found through the full-text indexes, newest
first; entities by their id or external id (exactly, or as its start) through
B-tree indexes. Each kind stops counting at COUNT_CAP, so a common word reads a
bounded part of an index and the answer says "1,000+"."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import F, TextField
from django.db.models.functions import Cast, Collate, Substr
from django.urls import reverse

from traces.key_urls import key_url
from traces.models import EntityCounter, Run, Step
from traces.queries.entities import EntityRow
from traces.queries.runs import run_list_columns
from traces.queries.steps import step_list_columns

from . import exact
from .exact import exact_matches, put_first
from .index import RUNS, STEPS, VALUE_CHARS, SearchedTable, fts_query
from .newest import newest_keyed, newest_matches

COUNT_CAP = 1000
SHOWN = 20
MAX_WORDS = 8
# A word is searched only when it has a letter or digit to match.
SEARCHABLE = re.compile(r"[^\W_]")
# `customer:cus_1` names one entity by its type.
TYPED_ENTITY = re.compile(r"^(?P<type>[^:\s]{1,200}):(?P<id>\S.*)$")


@dataclass
class Found:
    """One kind's matches: the newest SHOWN of them, and how many (up to COUNT_CAP;
    `capped` when there are more)."""

    items: list
    count: int
    capped: bool = False

    @classmethod
    def of(cls, items: list, matches: int) -> Found:
        return cls(items, min(matches, COUNT_CAP), matches > COUNT_CAP)


@dataclass
class SearchResults:
    query: str
    runs: Found
    steps: Found
    entities: Found
    # The one object whose id is exactly the query, when there is exactly one
    # (exact.py); all of those whose id it is, listed first in their kinds.
    exact: object | None = None
    exact_matches: list = field(default_factory=list)
    words: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.runs.count + self.steps.count + self.entities.count


def words_of(query: str) -> list[str]:
    return [word for word in query.split() if SEARCHABLE.search(word)][:MAX_WORDS]


def search(query: str) -> SearchResults:
    query = query.strip()
    words = words_of(query)
    runs = _found_rows(RUNS, words, _runs_by_id)
    # PostgreSQL: a query of one word whose steps the exact key probe reads too (the
    # newest KEY_PROBE holding it) reads them once, one walk of newest.py for both, and
    # which of them are keyed `query` with them (not 1,000 id lookups after).
    shared = connection.vendor == "postgresql" and words == [query] and exact.probes_key(query)
    keyed = None
    if shared:
        with connection.cursor() as cursor:
            newest, matches, keyed = newest_keyed(
                cursor, STEPS, words, exact.KEY_PROBE, COUNT_CAP, key=query
            )
        steps = Found.of(_steps_by_id(newest[:SHOWN]), matches)
    else:
        steps = _found_rows(STEPS, words, _steps_by_id)
    entities = _entities(query)
    results = SearchResults(query, runs, steps, entities, words=words)
    put_first(results, exact_matches(query, keyed), SHOWN)
    for found in (*runs.items, *steps.items):
        found.matched_in = matched_in(found, words)
    for step in steps.items:
        step.url = url_of(step)
    return results


# What a match was found in, as the page names it: (attribute of the loaded row, label).
MATCH_LABELS = {
    Run: (("external_id", "id"), ("name", "name"), ("type", "type"), ("trigger", "trigger"),
          ("actor", "actor"), ("error", "error")),
    Step: (("key", "id"), ("name", "name"), ("type", "type"), ("error_head", "error"),
           ("attribute_words", "attributes"), ("input_words", "input")),
}  # fmt: skip
# A word's tokens, as both indexes split text (search/index.py).
TOKEN = re.compile(r"[^\W_]+")


def tokens_of(text: str) -> list[str]:
    return TOKEN.findall(text.casefold())


def _holds(tokens: list[str], phrase: list[str]) -> bool:
    size = len(phrase)
    return any(tokens[at : at + size] == phrase for at in range(len(tokens) - size + 1))


def matched_in(found, words: list[str]) -> str:
    """Where the words are, as the index matched them (each word a phrase of whole
    tokens): "id", "name, error", "input", ... A run's attributes are not loaded (their
    keys are searched too): a run's match in none of its loaded fields is in them."""
    phrases = [tokens_of(word) for word in words]
    deferred = found.get_deferred_fields()  # never a query per row
    fields = [
        (label, tokens_of(str(getattr(found, name, "") or "")))
        for name, label in MATCH_LABELS[type(found)]
        if name not in deferred
    ]
    places = [label for label, tokens in fields if any(_holds(tokens, p) for p in phrases)]
    if not places and isinstance(found, Step):
        # A phrase across two fields (`name` then `type`): the fields holding its words.
        places = [label for label, tokens in fields if any(set(p) & set(tokens) for p in phrases)]
    return ", ".join(places) or "attributes"


# --- runs and steps: the full-text indexes --------------------------------------------------


def _found_rows(searched: SearchedTable, words: list[str], load) -> Found:
    """The kind's matches: the newest SHOWN loaded, and how many."""
    if not words:
        return Found([], 0)
    ids, matches = _matching_ids(searched, words)
    return Found.of(load(ids[:SHOWN]), matches)


def _matching_ids(searched: SearchedTable, words: list[str]) -> tuple[list[int], int]:
    """Ids of the newest matching rows (highest id first; at least SHOWN of them), and
    how many rows match, counted up to COUNT_CAP + 1."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            return newest_matches(cursor, searched, words, SHOWN, COUNT_CAP)
        cursor.execute(
            f"SELECT rowid FROM {searched.fts} WHERE {searched.fts} MATCH %s "
            f"ORDER BY rowid DESC LIMIT {COUNT_CAP + 1}",
            [fts_query(words)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        return ids, len(ids)


def _in_id_order(rows, ids: list[int]) -> list:
    by_id = {row.pk: row for row in rows}
    return [by_id[pk] for pk in ids if pk in by_id]


def _runs_by_id(ids: list[int]) -> list[Run]:
    return _in_id_order(run_list_columns(Run.objects.filter(pk__in=ids)), ids)


def _steps_by_id(ids: list[int]) -> list[Step]:
    steps = step_list_columns(Step.objects.filter(pk__in=ids)).annotate(
        attributes_head=_json_head("attributes"), input_head=_json_head("input")
    )
    rows = _in_id_order(steps, ids)
    for step in rows:
        step.attribute_words = " ".join(json_words(step.attributes_head))
        step.input_words = " ".join(json_words(step.input_head))
    return rows


def _json_head(column: str):
    """The start of a JSON column's text, as much as the index reads of its values and more."""
    return Substr(Cast(column, TextField()), 1, 4 * VALUE_CHARS)


def json_words(text: str | None) -> list[str]:
    """The strings and numbers in a JSON text (not its keys), as the index reads them;
    a text cut short is read for its string values up to the cut."""
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return [m[1] for m in JSON_STRING.finditer(text) if not m[2]]
    return value_words(value)


def value_words(value) -> list[str]:
    """The strings and numbers in a JSON value, its keys left out."""
    words: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed(item.values()))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            words.append(str(item))
    return words


# A JSON string, read from the text's start so each match is a whole string (its
# closing quote is never taken for an opening one), and the `:` after it when it is a key.
JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:)?')


# --- entities: their ids -------------------------------------------------------------------


def _entities(query: str) -> Found:
    """Entities named by `type:id`, those whose external id is the query, and those
    whose id starts with it (an exact id sorts first there), in that order."""
    if not query or len(query) > 500:
        return Found([], 0)
    counters = EntityCounter.objects.all()
    typed = TYPED_ENTITY.match(query)
    ids = _prefixed(counters.filter(entity_type=typed["type"]), typed["id"]) if typed else []
    ids += counters.filter(external_id=query).values_list("pk", flat=True)[: COUNT_CAP + 1]
    ids += _prefixed(counters, query)
    ids = list(dict.fromkeys(ids))
    shown = _in_id_order(EntityCounter.objects.filter(pk__in=ids[:SHOWN]), ids[:SHOWN])
    return Found.of([EntityRow.of(counter) for counter in shown], len(ids))


def _prefixed(counters, prefix: str) -> list[int]:
    """Ids of the entities whose id starts with `prefix`, in id order: a range of an
    index on entity_id (a LIKE would scan: SQLite's LIKE ignores case, the index not).
    The range brackets "starts with" only in code point order: SQLite's BINARY, and
    PostgreSQL's "C" collation, which a linguistic database collation (en_US, ICU)
    is not (it may skip punctuation, so `a_b...` sorts among `ab...`)."""
    within = counters.alias(byte_id=_in_code_point_order("entity_id"))
    within = within.filter(byte_id__gte=prefix, byte_id__lt=prefix + "\U0010ffff")
    rows = within.order_by("byte_id").values_list("pk", "entity_id")[: COUNT_CAP + 1]
    return [pk for pk, entity_id in rows if entity_id.startswith(prefix)]


def _in_code_point_order(column: str):
    """The column as the prefix indexes sort it (migration 0022_entity_prefix)."""
    if connection.vendor == "postgresql":
        return Collate(F(column), "C")
    return F(column)


def url_of(found) -> str:
    """The page of a run, step or entity the search found ("" when it has none)."""
    if isinstance(found, Run):
        return found.get_absolute_url()
    if isinstance(found, Step):
        return key_url("traces:step-detail", found.run_id, found.key)
    if not found.linkable:
        return ""
    return reverse("traces:entity-detail", args=[found.entity_type, found.entity_id])


def kind_of(found) -> str:
    return {Run: "run", Step: "step"}.get(type(found), "entity")
