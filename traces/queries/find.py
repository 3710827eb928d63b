"""Find in run: the steps of one run that a find names, as Jaeger's "Find" does, for
the run page's tree and timeline and the API's run steps.

A find is words and `status:NAME` terms. A step matches when every word is in its
name, key, type or error or among the values of its attributes or input (as the
search reads them), and its status is one of those named (any, when none
is). Words are read as the search reads them: a word is a phrase of its
letters-and-digits tokens (`fetch_charges` is `fetch charges`), each a whole
token; a word ending in `*` matches tokens starting with it (`01M3250Z*`).

Words are looked up in the search's full-text index (search/index.py: SQLite
FTS5, PostgreSQL's GIN on the steps' stored tsvector), bounded by the range of the
run's step ids (noted on the Run at ingest: `scope`; SQLite FTS5 seeks to it in each
word's list, PostgreSQL reads its id buckets), so a find costs what its matches cost,
not what the run's 100,000 steps would. On PostgreSQL a word with many matches is
instead tested on the stored vector of each step a window reads (the run's steps in
order), which stops at the window's end. The matches come a keyset window at a time
in run order (seq), with their count up to COUNT_CAP, and the ancestors of a window's
matches in one recursive query, so the tree can show each match under its parents
however deep it is and however many there are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import BooleanField, F, QuerySet
from django.db.models.expressions import RawSQL

from traces.models import Run, Status, Step
from traces.pagination import Page, keyset_page
from traces.search.index import COARSE_BITS, STEPS, pg_anywhere, pg_in_bucket, pg_rechecked

from .steps import MAX_ANCESTORS, capped_count, only_failed_subtrees, step_rows

MAX_FIND = 200
MAX_WORDS = 8
# A window of matches: each brings its ancestors to the tree.
FIND_WINDOW = 50
# Counted up to this: "10,000+ matches".
COUNT_CAP = 10_000
# The tokens of a word, as both full-text indexes split it (letters and digits).
TOKEN = re.compile(r"[^\W_]+")
STATUS_TERM = re.compile(r"^status:(.*)$", re.IGNORECASE)
# A word in double quotes keeps its spaces: `"rate limit"` is one phrase.
TERM = re.compile(r'"([^"]*)"?|(\S+)')


class BadFind(ValueError):
    """A find that cannot be looked for; its message says why (a 400)."""


@dataclass(frozen=True)
class Find:
    text: str
    phrases: tuple[tuple[str, ...], ...] = ()  # each word's tokens, lower case
    prefixes: tuple[bool, ...] = ()  # each word's last token is a prefix (`word*`)
    statuses: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.phrases or self.statuses)


def parse(text: str) -> Find:
    """The find `text` names. Raises BadFind for one that names nothing to look for,
    is too long, or names a status no step has."""
    text = (text or "").strip()
    if not text:
        return Find("")
    if len(text) > MAX_FIND:
        raise BadFind(f"a find is at most {MAX_FIND} characters")
    if "\x00" in text:
        raise BadFind("a find cannot hold a NUL character")
    phrases: dict[tuple[str, ...], bool] = {}
    statuses: list[str] = []
    for quoted, bare in TERM.findall(text):
        term = quoted if quoted else bare
        status = STATUS_TERM.match(term) if not quoted else None
        if status:
            name = status[1].strip().lower()
            if name not in Status.values:
                choices = ", ".join(Status.values)
                raise BadFind(f"status:{status[1]} is not a status (one of {choices})")
            statuses.append(name)
            continue
        tokens = tuple(token.lower() for token in TOKEN.findall(term))
        if tokens:
            phrases[tokens] = phrases.get(tokens, False) or term.endswith("*")
    if len(phrases) > MAX_WORDS:
        raise BadFind(f"a find has at most {MAX_WORDS} words")
    if not phrases and not statuses:
        raise BadFind("nothing to find: give a word with a letter or a digit, or status:NAME")
    return Find(text, tuple(phrases), tuple(phrases.values()), tuple(dict.fromkeys(statuses)))


# --- where a find looks -----------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The run a find looks in, and the range of its steps' ids when the store noted it
    (Run.step_id_min / step_id_max): the index lookups are bounded by it as they are
    written. Not noted (a run given by its id, or stored before 0035), the run's ids
    are read from its steps."""

    run_id: int
    ids: tuple[int, int] | None = None  # every step of the run lies in it
    alone: bool = False  # and no other run's step does: as many ids as the run's steps


def scope(run: Run | int | Scope) -> Scope:
    """A Run's scope (its noted range of step ids used), or a run id's (read)."""
    if isinstance(run, Scope):
        return run
    if not isinstance(run, Run):
        return Scope(int(run))
    if {"step_id_min", "step_id_max", "step_count"} & run.get_deferred_fields():
        return Scope(run.pk)  # a Run read without them: not a query more for them
    low, high = run.step_id_min, run.step_id_max
    if low is None or high is None:
        return Scope(run.pk)
    # Every step lies in the range, and the steps are at least step_count (synthetic
    # ones are not counted there): as many ids as that, they are the range's all.
    return Scope(run.pk, (low, high), high - low + 1 == run.step_count)


# --- the full-text part ---------------------------------------------------------------------


def fts5_query(find: Find) -> str:
    """FTS5: every phrase (`"a b"`, or `"a b" *` for a prefix). Tokens are letters
    and digits only, so nothing in them is read as FTS5 syntax."""
    return " AND ".join(
        f'"{" ".join(tokens)}"{" *" if prefix else ""}'
        for tokens, prefix in zip(find.phrases, find.prefixes, strict=True)
    )


# The find's tsquery (one `%s`: pg_tsquery's text).
PG_QUERY = "to_tsquery('simple'::regconfig, %s)"


def pg_tsquery(find: Find) -> str:
    """PostgreSQL: to_tsquery text of every phrase (`a <-> b`, or `a <-> b:*`)."""
    return " & ".join(
        "(" + " <-> ".join(tokens) + (":*" if prefix else "") + ")"
        for tokens, prefix in zip(find.phrases, find.prefixes, strict=True)
    )


def _matching_ids_sql(
    where: Scope, find: Find, limit: int | None = None, id_range: tuple[int, int] | None = None
) -> tuple[str, list]:
    """SQL of the ids of the run's steps holding every word of the find (at most
    `limit` of them; within `id_range` when given), served by the full-text index."""
    cut = f" LIMIT {int(limit)}" if limit else ""
    table, run = STEPS.table, int(where.run_id)
    if connection.vendor == "postgresql":
        # `run_id + 0`: no B-tree serves it, so the planner starts from the GIN index
        # rather than the run's steps through (run, ...) (~100,000 for a big run: what a
        # small table's statistics can suggest).
        query = pg_tsquery(find)
        if where.ids is None:
            # The words in every id bucket (search/index.py), rechecked where need be.
            anywhere = pg_anywhere(STEPS, PG_QUERY)
            return (
                f"SELECT id FROM {table} WHERE run_id + 0 = %s "
                f"AND {anywhere} AND {pg_rechecked(STEPS, PG_QUERY)}{cut}",
                [run, query, query, query],
            )
        # The noted range's coarse buckets, each read through the GIN index as the
        # words in that bucket (a nested loop), as _pg_count_sql does: the run's
        # postings, not the words' in the whole store (3,686 for `429`, 454 of them the
        # big run's).
        return _pg_bucket_walk(_pg_buckets(where.ids), cut), _walk_params(run, query)
    # A run's steps are written together, so their ids are one range (or a few):
    # FTS5 seeks to it in each word's list instead of reading the whole database's.
    # Another writer's steps may lie in the range too: with a LIMIT, unless the run's
    # ids are the range's alone (the noted range as many ids as the run's steps; not
    # noted, its steps as many as its ids' span: one count, read once), each match is
    # checked for its run (by primary key) before it counts.
    fts = STEPS.fts
    probe = f"EXISTS (SELECT 1 FROM {table} AS s WHERE s.id = {fts}.rowid AND s.run_id = {run})"
    if not limit or where.alone:
        own = ""
    elif where.ids is not None:
        own = f" AND {probe}"
    else:
        alone = f"(SELECT max(id) - min(id) + 1 = count(*) FROM {table} WHERE run_id = {run})"
        own = f" AND ({alone} OR {probe})"
    if id_range is not None or where.ids is not None:
        return (
            f"SELECT rowid FROM {fts} WHERE {fts} MATCH %s "
            f"AND rowid >= %s AND rowid <= %s{own}{cut}",
            [fts5_query(find), *(id_range or where.ids)],
        )
    bounds = f"(SELECT {{}}(id) FROM {table} WHERE run_id = %s)"
    return (
        f"SELECT rowid FROM {fts} WHERE {fts} MATCH %s "
        f"AND rowid >= {bounds.format('min')} AND rowid <= {bounds.format('max')}{own}{cut}",
        [fts5_query(find), run, run],
    )


# --- the matches ----------------------------------------------------------------------------

# Up to this many matches, a window is read from the matches (each looked up by id,
# then sorted); beyond, by walking the run's steps in seq order, each checked against
# the matches, which finds a window's first 50 in the first few hundred steps.
FEW_MATCHES = 2_000


def matching(
    run: Run | int | Scope,
    find: Find,
    *,
    failed_only: bool = False,
    from_matches: bool = False,
    id_range: tuple[int, int] | None = None,
    in_order: bool = True,
) -> QuerySet:
    """The run's steps the find names (all of the run's without a find).
    `from_matches`: have the database start from the word matches, not from the run's
    steps (a few matches among many steps); `in_order`: they are read in run order
    (a window), not counted."""
    where = scope(run)
    steps = Step.objects.all()
    by_id = from_matches or id_range is not None
    if by_id and find.phrases and connection.vendor == "sqlite":
        # `run_id + 0` is no index's column: SQLite looks the matches (or a window's
        # ids) up by id instead of walking the run's 100,000 steps to test each, which
        # without statistics it takes for a few rows.
        steps = steps.alias(run_plus=F("run_id") + 0).filter(run_plus=where.run_id)
    else:
        steps = steps.filter(run_id=where.run_id)
    if find.phrases and connection.vendor == "postgresql" and not from_matches:
        # Each step the query reads anyway (the run's in seq order, a window's ids, a
        # count's first matches) is tested on its stored vector (~1 µs): a word in 40 %
        # of a run reads ~2.5 steps a match shown, not its 40,000 matches; and not the
        # word's matches in every other run (the GIN index's, which a word common in
        # the database, `fetch_charges` in 220,000 steps, makes 190,000 rows to read).
        steps = steps.filter(_pg_vector_matches(find))
    elif find.phrases:
        sql, params = _matching_ids_sql(where, find, id_range=id_range)
        steps = steps.filter(id__in=RawSQL(sql, params))
    if len(find.statuses) == 1:
        # `=`: SQLite reads a partial index (status = 'failed') for it, not for `IN (...)`.
        steps = steps.filter(status=find.statuses[0])
    elif find.statuses:
        steps = steps.filter(status__in=find.statuses)
    if find.statuses == (Status.FAILED,):
        # A failed step is in a failed subtree (the store marks it and its ancestors):
        # read in order, the (run, failed_subtree, seq) index serves the window;
        # counted, the run's failed steps' own index (step_run_failed_started) holds
        # them alone, where the subtrees' steps (36,698 in the big run) are each read
        # for its status (35 ms on SQLite at 1 M steps).
        failed_only = in_order and not from_matches
    if failed_only:
        steps = only_failed_subtrees(steps)
    return steps


def _pg_vector_matches(find: Find) -> RawSQL:
    return RawSQL(
        f'"{STEPS.table}"."{STEPS.pg_column}" @@ to_tsquery(\'simple\'::regconfig, %s)',
        [pg_tsquery(find)],
        output_field=BooleanField(),
    )


def count(run: Run | int, find: Find, *, failed_only: bool = False) -> tuple[int, bool]:
    """How many steps match, up to COUNT_CAP (and whether there are more). Given the
    Run, its noted range of step ids bounds the index lookups (`scope`)."""
    if find.phrases and not (find.statuses or failed_only):
        return _count_words(scope(run), find, COUNT_CAP)
    steps = matching(run, find, failed_only=failed_only, in_order=False)
    return capped_count(steps, COUNT_CAP)


def window(
    run: Run | int,
    find: Find,
    *,
    counted: tuple[int, bool],
    failed_only: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = FIND_WINDOW,
) -> Page:
    """One window of the matches in run order (seq), given their count. Raises
    BadCursor."""
    matches, capped = counted
    if matches == 0:
        return Page([], None, None)
    few = matches <= FEW_MATCHES and not capped
    steps = step_rows(matching(run, find, failed_only=failed_only, from_matches=few))
    return keyset_page(steps, "seq", descending=False, after=after, before=before, size=size)


def _count_words(where: Scope, find: Find, cap: int) -> tuple[int, bool]:
    """The run's steps holding the words, counted to `cap` + 1 from the index alone:
    its first matches are all a count needs to read (no step of the run is walked)."""
    if connection.vendor == "postgresql":
        sql, params = _pg_count_sql(where, find, cap)
    else:
        sql, params = _matching_ids_sql(where, find, cap + 1)
        sql = f"SELECT count(*) FROM ({sql}) AS hits"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (found,) = cursor.fetchone()
    return min(found, cap), found > cap


def _pg_bucket_walk(span: str, cut: str = "") -> str:
    """PostgreSQL: the ids of the run's steps holding the words (parameters:
    _walk_params), a coarse bucket of ids at a time from `span` (a FROM item with a
    `bucket` column): each bucket read through the GIN index as the words in that
    bucket (the run's postings, not the words' in the whole store) by a lateral
    subquery, kept a nested loop by its LIMIT `cut` (which stops it at the cap) or
    OFFSET 0: pulled up into a join, it was read by the words alone, the bucket a join
    filter."""
    return (
        f"SELECT hit.id FROM {span} CROSS JOIN LATERAL (SELECT id FROM {STEPS.table} "
        f"WHERE {pg_in_bucket(STEPS, 'span.bucket', PG_QUERY)} AND run_id + 0 = %s "
        f"AND {pg_rechecked(STEPS, PG_QUERY)}{cut or ' OFFSET 0'}) AS hit{cut}"
    )


def _walk_params(run: int, query: str) -> list:
    return [query, run, query, query]


def _pg_buckets(ids: tuple[int, int]) -> str:
    """The coarse buckets of a range of ids."""
    low, high = (bound >> COARSE_BITS for bound in ids)
    return f"generate_series({int(low)}::bigint, {int(high)}::bigint) AS span(bucket)"


def _pg_count_sql(where: Scope, find: Find, cap: int) -> tuple[str, list]:
    """PostgreSQL: the run's steps holding the words, counted to `cap` + 1, in one
    statement, the buckets of the run's ids read through the GIN index
    (_pg_bucket_walk: ~45 ms at 1 M steps for the whole store's postings of a common
    word). The run's noted range (Run.step_id_min/max) holds all its steps, so its
    buckets' count is the answer. Not noted, the ids of its first and last step (in seq
    order, two probes of step_run_seq) name the buckets: more than the cap found there
    is the answer whatever lies outside them; fewer, and the words' few matches in
    every bucket are counted for the run, so a step outside the range is still counted
    (`run_id + 0`: the planner, guessing ~50,000 matches of buckets known at run time,
    ANDed them with the run's every step in step_run_seq, 4-7 ms for a big run)."""
    table, run, query = STEPS.table, int(where.run_id), pg_tsquery(find)
    cap += 1
    cut = f" LIMIT {cap}"
    if where.ids is not None:
        walk = _pg_bucket_walk(_pg_buckets(where.ids), cut)
        return f"SELECT count(*) FROM ({walk}) AS hits", _walk_params(run, query)
    match = f"{pg_anywhere(STEPS, PG_QUERY)} AND {pg_rechecked(STEPS, PG_QUERY)}"
    # The buckets a recursive step at a time. However few they are, the planner guesses
    # 31 of them, a cost that JIT would compile (50-500 ms): the site's connections have
    # JIT off (settings).
    sql = f"""
WITH RECURSIVE ends(a, b) AS (
    SELECT (SELECT id FROM {table} WHERE run_id = %s ORDER BY seq, id LIMIT 1),
           (SELECT id FROM {table} WHERE run_id = %s ORDER BY seq DESC, id DESC LIMIT 1)
), span(bucket, last) AS (
    SELECT least(a, b) >> {COARSE_BITS}, greatest(a, b) >> {COARSE_BITS} FROM ends
    UNION ALL SELECT bucket + 1, last FROM span WHERE bucket < last
), ranged(n) AS (
    SELECT count(*) FROM ({_pg_bucket_walk("span", cut)}) AS hits
)
SELECT CASE WHEN n >= {cap} THEN n ELSE (SELECT count(*) FROM (
    SELECT id FROM {table} WHERE run_id + 0 = %s AND {match}{cut}) AS every) END
FROM ranged"""
    return sql, [run, run, *_walk_params(run, query), run, query, query, query]


def few_matches(run: Run | int, find: Find) -> bool:
    """At most FEW_MATCHES steps match (window() reads them from the matches)."""
    return bool(find.phrases) and not _count_words(scope(run), find, FEW_MATCHES)[1]


def ids_among(run: Run | int, find: Find, ids: list[int]) -> set[int]:
    """Which of these steps of the run match (a timeline window's highlights)."""
    if not ids or not find:
        return set()
    # Only the window's ids are looked for in the index.
    steps = matching(run, find, id_range=(min(ids), max(ids))).filter(id__in=ids)
    return set(steps.values_list("id", flat=True))


ANCESTORS_SQL = f"""
WITH RECURSIVE up(id, n) AS (
    SELECT parent_id, 1 FROM {Step._meta.db_table}
    WHERE id IN (SELECT value FROM json_each(%s)) AND parent_id IS NOT NULL
    UNION
    SELECT s.parent_id, up.n + 1 FROM {Step._meta.db_table} s JOIN up ON s.id = up.id
    WHERE s.parent_id IS NOT NULL AND up.n < {MAX_ANCESTORS}
) SELECT id FROM up"""

PG_ANCESTORS_SQL = ANCESTORS_SQL.replace(
    "SELECT value FROM json_each(%s)", "SELECT unnest(%s::bigint[])"
)


def ancestors_of(steps: list[Step]) -> list[Step]:
    """Every ancestor of these steps, each once, as tree rows in run order: their ids
    in one recursive query, however many steps and however deep, then their rows."""
    ids = [step.pk for step in steps if step.parent_id is not None]
    if not ids:
        return []
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if postgres:
            cursor.execute(PG_ANCESTORS_SQL, [ids])
        else:
            cursor.execute(ANCESTORS_SQL, [json.dumps(ids)])
        chain = [row[0] for row in cursor.fetchall()]
    return list(step_rows(Step.objects.filter(id__in=chain)).order_by("seq", "id"))
