"""An exact id: the runs, steps and entities whose own id is the query, found by
indexed lookups whatever the full-text ranking says (query.py lists the newest 20
matches; an exact id may be the 21st, or not a full-text match at all: a run's
number).

- a run: its external id, or its number (the id in its URL). External ids are
  unique per (format, origin), the index `run_unique_per_format_origin`; there are
  a handful of (format, origin) pairs, so a loose scan of that index (a recursive
  query stepping from one origin to the next) lists them and each is a probe for
  the id: no index on external_id alone is needed.
- a step: its key, through the full-text index (a step's key is among its indexed
  words): the steps holding the key's words, then the key compared exactly; up to
  KEY_PROBE of them, so a key whose words more than 1,000 steps hold (a common
  step name, not an id) is looked for among the newest 1,000 only. A key of
  digits alone is a position in its run (`1`, `12`: thousands of runs have one),
  not an id: it is looked up only with its run, `RUN/KEY` (the run's external id
  or number, a slash, the step's key, as the step page shows them).
- an entity: `type:id`, a bare id of any type, or an external id (the entity
  counters' B-tree indexes).

One query finds the ids of every kind (at most LIMIT of each); a kind's rows are
loaded only when it has some."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection

from traces.models import EntityCounter, Format, Run, Step
from traces.queries.entities import EntityRow
from traces.queries.runs import run_list_columns
from traces.queries.steps import step_list_columns

from .index import STEPS, fts_query
from .newest import newest_matches

# At most this many of each kind are looked up (one more than the page shows).
LIMIT = 21
# A step's run and key, `RUN/KEY`: at most this many ways of splitting at a slash.
MAX_SPLITS = 3
# Steps holding a key's words read to find the key (see _steps_keyed_sql).
KEY_PROBE = 1000
# Longer than any stored id (external ids 255, entity ids 500).
MAX_ID = 500


@dataclass
class ExactMatches:
    runs: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    entities: list = field(default_factory=list)

    @property
    def all(self) -> list:
        return [*self.runs, *self.steps, *self.entities]


def exact_matches(query: str, newest_steps: list[int] | None = None) -> ExactMatches:
    """The runs, steps and entities whose id is exactly `query` (each kind newest
    first, entities by type and id; at most LIMIT of each). `newest_steps`: the ids of
    the newest KEY_PROBE steps holding the query as one word, or those of them keyed
    `query`, when the caller has read them already (PostgreSQL's search: see
    probes_key)."""
    found = ExactMatches()
    if not query or len(query) > MAX_ID or query != query.strip():
        return found
    parts = [("run", *_runs_sql(query)), ("step", *_steps_sql(query, newest_steps))]
    parts.append(("entity", *_entities_sql(query)))
    parts = [(kind, sql, params) for kind, sql, params in parts if sql]
    union = " UNION ALL ".join(
        f"SELECT * FROM (SELECT '{kind}' AS kind, id FROM ({sql}) AS {kind}_ids LIMIT {LIMIT}) "
        f"AS {kind}_found"
        for kind, sql, _ in parts
    )
    ids: dict[str, list[int]] = {"run": [], "step": [], "entity": []}
    with connection.cursor() as cursor:
        cursor.execute(union, [param for _, _, params in parts for param in params])
        for kind, pk in cursor.fetchall():
            ids[kind].append(pk)
    if ids["run"]:
        runs = run_list_columns(Run.objects.filter(pk__in=ids["run"]))
        found.runs = sorted(runs, key=lambda run: -run.pk)
    if ids["step"]:
        steps = step_list_columns(Step.objects.filter(pk__in=ids["step"]))
        found.steps = sorted(steps, key=lambda step: -step.pk)
    if ids["entity"]:
        counters = EntityCounter.objects.filter(pk__in=ids["entity"])
        rows = [EntityRow.of(counter) for counter in counters]
        found.entities = sorted(rows, key=lambda row: (row.entity_type, row.entity_id))
    return found


def put_first(results, exact: ExactMatches, shown: int) -> None:
    """Each kind's exact matches first in its list (marked `exact`), the others after,
    `shown` in all; `results.exact` the one match when there is exactly one."""
    for name in ("runs", "steps", "entities"):
        found, first = getattr(results, name), getattr(exact, name)
        if not first:
            continue
        for item in first:
            item.exact = True
        wanted = {_identity(item) for item in first}
        others = [item for item in found.items if _identity(item) not in wanted]
        if found.count < shown:
            # Every full-text match is shown: those not among them are more matches (a
            # run's number is not in the index); past that, they are within the count.
            found.count += len(first) - (len(found.items) - len(others))
        found.items = (first + others)[:shown]
    results.exact_matches = exact.all
    results.exact = exact.all[0] if len(exact.all) == 1 else None


def _identity(item) -> tuple:
    if isinstance(item, EntityRow):
        return ("entity", item.entity_type, item.entity_id)
    return (type(item).__name__, item.pk)


# --- the lookups, each SQL giving ids (or "" when the query cannot name that kind) --------------


def _runs_sql(run_id: str) -> tuple[str, list]:
    """Runs whose external id is `run_id`, or whose number it is."""
    formats = [value for value, _ in Format.choices]
    rows = ", ".join(["(%s)"] * len(formats))
    sql = (
        f"WITH RECURSIVE run_format(format) AS (VALUES {rows}), "
        "run_origin(format, origin) AS ("
        "SELECT run_format.format, (SELECT r.origin FROM traces_run r "
        "WHERE r.format = run_format.format ORDER BY r.origin LIMIT 1) FROM run_format "
        "UNION ALL "
        "SELECT run_origin.format, (SELECT r.origin FROM traces_run r "
        "WHERE r.format = run_origin.format AND r.origin > run_origin.origin "
        "ORDER BY r.origin LIMIT 1) FROM run_origin WHERE run_origin.origin IS NOT NULL) "
        # A probe of each origin (unique: at most one run), a subquery the planner keeps:
        # as a join, PostgreSQL read the whole index for the external id instead (its
        # leading columns unbound: 691 pages, 1-14 ms at 47,000 runs; ten times that at
        # 10 M steps), never running the loose scan.
        "SELECT id FROM (SELECT (SELECT r.id FROM traces_run r "
        "WHERE r.format = run_origin.format AND r.origin = run_origin.origin "
        "AND r.external_id = %s) AS id FROM run_origin) AS probed WHERE id IS NOT NULL"
    )
    params = [*formats, run_id]
    if _is_number(run_id) and len(run_id) < 19:
        sql += " UNION SELECT id FROM traces_run WHERE id = %s"
        params.append(int(run_id))
    return sql, params


def probes_key(query: str) -> bool:
    """Whether exact_matches looks for steps keyed `query` among the newest steps
    holding it as a word (not a key of digits alone)."""
    return bool(query) and len(query) <= MAX_ID and not _is_number(query) and _has_words(query)


def _steps_sql(query: str, newest_steps: list[int] | None = None) -> tuple[str, list]:
    """Steps whose key is the query (not a key of digits alone), and those named
    `RUN/KEY`."""
    parts = []
    if probes_key(query):
        parts.append(_steps_keyed_sql(query, newest_steps))
    slashes = [at for at, char in enumerate(query) if char == "/"][:MAX_SPLITS]
    for at in slashes:
        run_id, key = query[:at], query[at + 1 :]
        if run_id and key:
            runs, params = _runs_sql(run_id)
            parts.append((f"SELECT id FROM traces_step WHERE run_id IN ({runs}) AND key = %s",
                          [*params, key]))  # fmt: skip
    if not parts:
        return "", []
    return " UNION ".join(sql for sql, _ in parts), [p for _, params in parts for p in params]


def _is_number(text: str) -> bool:
    """ASCII digits alone (str.isdigit takes "١٢" too, which int() reads as 12)."""
    return text.isascii() and text.isdigit()


def _has_words(query: str) -> bool:
    from .query import words_of

    return bool(words_of(query))


def _steps_keyed_sql(key: str, newest: list[int] | None = None) -> tuple[str, list]:
    """Steps whose key is `key`: of the (newest, on SQLite) KEY_PROBE steps holding the
    key's words, those whose key it is. A step's key is among its indexed words, so
    this is every such step while fewer than KEY_PROBE hold them (an id's words are
    rare: a pasted id is held by a step or two). A key's column alone is no cheaper to
    ask: FTS5 reads every row holding the words to filter by column, ~65 ms at 1 M
    steps for a common step name, where the newest 1,000 take ~1.5 ms. `newest`:
    PostgreSQL, those steps' ids when the caller has read them."""
    if connection.vendor == "postgresql":
        # The newest KEY_PROBE, as on SQLite, a bucket of ids at a time (newest.py): the
        # GIN index alone gives all of a common word's matches, unordered.
        if newest is None:
            with connection.cursor() as cursor:
                newest, _ = newest_matches(cursor, STEPS, [key], KEY_PROBE, KEY_PROBE)
        return f"SELECT id FROM {STEPS.table} WHERE id = ANY(%s) AND key = %s", [newest, key]
    return (
        f"SELECT s.id FROM (SELECT rowid AS id FROM {STEPS.fts} WHERE {STEPS.fts} MATCH %s "
        f"ORDER BY rowid DESC LIMIT {KEY_PROBE}) AS keyed "
        f"JOIN {STEPS.table} s ON s.id = keyed.id WHERE s.key = %s",
        [fts_query([key]), key],
    )


def _entities_sql(query: str) -> tuple[str, list]:
    """Entities named `type:id`, by a bare id of any type, or by their external id."""
    from .query import TYPED_ENTITY

    table = EntityCounter._meta.db_table
    sql = f"SELECT id FROM {table} WHERE entity_id = %s UNION SELECT id FROM {table} "
    sql += "WHERE external_id = %s"
    params = [query, query]
    typed = TYPED_ENTITY.match(query)
    if typed:
        sql += f" UNION SELECT id FROM {table} WHERE entity_type = %s AND entity_id = %s"
        params += [typed["type"], typed["id"]]
    return sql, params
