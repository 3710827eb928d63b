"""Find in run: the steps of one run that a find names, as Jaeger's "Find" does, for
the run page's tree and timeline and the API's run steps.

A find is words and `status:NAME` terms. A step matches when every word is in its
name, key, type or error or among the values of its attributes or input (as the
search reads them), and its status is one of those named (any, when none
is). Words are read as the search reads them: a word is a phrase of its
letters-and-digits tokens (`fetch_charges` is `fetch charges`), each a whole
token; a word ending in `*` matches tokens starting with it (`01M3250Z*`).

Words are looked up in the search's full-text index (search/index.py: SQLite
FTS5, PostgreSQL's GIN on the steps' stored tsvector), bounded by the run's step
ids on SQLite, so a find costs what its matches cost, not what the run's 100,000
steps would. On PostgreSQL a word with many matches is instead tested on the stored
vector of each step a window reads (the run's steps in order), which stops at the
window's end, and a count of words reads the GIN index within the id buckets of the
run's steps (_pg_count_sql). The matches come a keyset window at a time in run
order (seq), with their count up to COUNT_CAP, and the ancestors of a window's
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

from traces.models import Status, Step
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
    run_id: int, find: Find, limit: int | None = None, id_range: tuple[int, int] | None = None
) -> tuple[str, list]:
    """SQL of the ids of the run's steps holding every word of the find (at most
    `limit` of them; within `id_range` when given), served by the full-text index."""
    cut = f" LIMIT {int(limit)}" if limit else ""
    if connection.vendor == "postgresql":
        # `run_id + 0`: no B-tree serves it, so the planner starts from the GIN index
        # rather than the run's steps through (run, ...) (~100,000 for a big run: what a
        # small table's statistics can suggest).
        # The words' keys in every id bucket (search/index.py), the phrase rechecked.
        anywhere = pg_anywhere(STEPS, PG_QUERY)
        return (
            f"SELECT id FROM {STEPS.table} WHERE run_id + 0 = %s "
            f"AND {anywhere} AND {pg_rechecked(STEPS, PG_QUERY)}{cut}",
            [run_id, *[pg_tsquery(find)] * 3],
        )
    # A run's steps are written together, so their ids are one range (or a few):
    # FTS5 seeks to it in each word's list instead of reading the whole database's.
    # Another writer's steps may lie in the range too: with a LIMIT, unless the run's
    # ids are one unbroken range (its steps as many as its ids' span: one count, read
    # once), each match is checked for its run (by primary key) before it counts.
    fts, table, run = STEPS.fts, STEPS.table, int(run_id)
    own = (
        f" AND ((SELECT max(id) - min(id) + 1 = count(*) FROM {table} WHERE run_id = {run})"
        f" OR EXISTS (SELECT 1 FROM {table} AS s WHERE s.id = {fts}.rowid AND s.run_id = {run}))"
        if limit
        else ""
    )
    if id_range is not None:
        return (
            f"SELECT rowid FROM {fts} WHERE {fts} MATCH %s "
            f"AND rowid >= %s AND rowid <= %s{own}{cut}",
            [fts5_query(find), *id_range],
        )
    bounds = f"(SELECT {{}}(id) FROM {STEPS.table} WHERE run_id = %s)"
    return (
        f"SELECT rowid FROM {fts} WHERE {fts} MATCH %s "
        f"AND rowid >= {bounds.format('min')} AND rowid <= {bounds.format('max')}{own}{cut}",
        [fts5_query(find), run_id, run_id],
    )


# --- the matches ----------------------------------------------------------------------------

# Up to this many matches, a window is read from the matches (each looked up by id,
# then sorted); beyond, by walking the run's steps in seq order, each checked against
# the matches, which finds a window's first 50 in the first few hundred steps.
FEW_MATCHES = 2_000


def matching(
    run_id: int,
    find: Find,
    *,
    failed_only: bool = False,
    limit: int | None = None,
    from_matches: bool = False,
    id_range: tuple[int, int] | None = None,
) -> QuerySet:
    """The run's steps the find names (all of the run's without a find). `limit`:
    look at most that many word matches up; `from_matches`: have the database start
    from the word matches, not from the run's steps (a few matches among many steps)."""
    steps = Step.objects.all()
    if from_matches and find.phrases and connection.vendor == "sqlite":
        # `run_id + 0` is no index's column: SQLite looks the matches up by id instead
        # of walking the run's 100,000 steps to test each.
        steps = steps.alias(run_plus=F("run_id") + 0).filter(run_plus=run_id)
    else:
        steps = steps.filter(run_id=run_id)
    if find.phrases and connection.vendor == "postgresql" and not from_matches:
        # Each step the query reads anyway (the run's in seq order, a window's ids, a
        # count's first matches) is tested on its stored vector (~1 µs): a word in 40 %
        # of a run reads ~2.5 steps a match shown, not its 40,000 matches; and not the
        # word's matches in every other run (the GIN index's, which a word common in
        # the database, `fetch_charges` in 220,000 steps, makes 190,000 rows to read).
        steps = steps.filter(_pg_vector_matches(find))
    elif find.phrases:
        sql, params = _matching_ids_sql(run_id, find, limit, id_range)
        steps = steps.filter(id__in=RawSQL(sql, params))
    if find.statuses:
        steps = steps.filter(status__in=find.statuses)
        if set(find.statuses) == {Status.FAILED} and not from_matches:
            failed_only = True  # failed steps are among these: their index serves it
    if failed_only:
        steps = only_failed_subtrees(steps)
    return steps


def _pg_vector_matches(find: Find) -> RawSQL:
    return RawSQL(
        f'"{STEPS.table}"."{STEPS.pg_column}" @@ to_tsquery(\'simple\'::regconfig, %s)',
        [pg_tsquery(find)],
        output_field=BooleanField(),
    )


def count(run_id: int, find: Find, *, failed_only: bool = False) -> tuple[int, bool]:
    """How many steps match, up to COUNT_CAP (and whether there are more)."""
    # Words alone: the index's first COUNT_CAP + 1 matches are all it needs to read.
    words_alone = not (find.statuses or failed_only)
    if words_alone and find.phrases and connection.vendor == "postgresql":
        return _pg_count(run_id, find, COUNT_CAP)
    limit = COUNT_CAP + 1 if words_alone and find.phrases else None
    steps = matching(run_id, find, failed_only=failed_only, limit=limit)
    return capped_count(steps, COUNT_CAP)


def window(
    run_id: int,
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
    steps = step_rows(matching(run_id, find, failed_only=failed_only, from_matches=few))
    return keyset_page(steps, "seq", descending=False, after=after, before=before, size=size)


def _pg_count(run_id: int, find: Find, cap: int) -> tuple[int, bool]:
    with connection.cursor() as cursor:
        cursor.execute(*_pg_count_sql(run_id, find, cap))
        (found,) = cursor.fetchone()
    return min(found, cap), found > cap


def _pg_count_sql(run_id: int, find: Find, cap: int) -> tuple[str, list]:
    """PostgreSQL: the run's steps holding the words, counted to `cap` + 1, in one
    statement. A run's steps are written together, so their ids are mostly one range:
    the ids of its first and last step (in seq order, two probes of step_run_seq) name
    the coarse buckets of that range, and each is read through the GIN index's keys of
    the words in that bucket (the run's postings, not the word's 220,000 in the whole
    store, ~45 ms at 1 M steps). More than the cap found there is the answer whatever
    lies outside it; fewer, and the run's steps are counted as before (the words' keys
    in every bucket ANDed with the run's steps), so a step outside the range is still
    counted."""
    table, words = STEPS.table, PG_QUERY
    match = pg_rechecked(STEPS, words)
    cap += 1
    # The buckets a recursive step at a time, each read by a lateral subquery whose
    # LIMIT keeps it a nested loop: a bucket at a time, stopping at the cap. However
    # few the buckets, the planner
    # guesses 31 of them, a cost that JIT would compile (50-500 ms): the site's
    # connections have JIT off (settings).
    sql = f"""
WITH RECURSIVE ends(a, b) AS (
    SELECT (SELECT id FROM {table} WHERE run_id = %s ORDER BY seq, id LIMIT 1),
           (SELECT id FROM {table} WHERE run_id = %s ORDER BY seq DESC, id DESC LIMIT 1)
), span(bucket, last) AS (
    SELECT least(a, b) >> {COARSE_BITS}, greatest(a, b) >> {COARSE_BITS} FROM ends
    UNION ALL SELECT bucket + 1, last FROM span WHERE bucket < last
), ranged(n) AS (
    SELECT count(*) FROM (
        SELECT 1 FROM span CROSS JOIN LATERAL (
            SELECT id FROM {table} WHERE {pg_in_bucket(STEPS, "span.bucket", words)}
            AND run_id + 0 = %s AND {match} LIMIT {cap}
        ) AS hit LIMIT {cap}
    ) AS hits
)
SELECT CASE WHEN n >= {cap} THEN n ELSE (SELECT count(*) FROM (
    SELECT id FROM {table} WHERE run_id = %s AND {pg_anywhere(STEPS, words)} AND {match}
    LIMIT {cap}) AS every) END
FROM ranged"""
    query = pg_tsquery(find)
    return sql, [run_id, run_id, query, run_id, query, query, run_id, query, query, query]


def few_matches(run_id: int, find: Find) -> bool:
    """At most FEW_MATCHES steps match (window() reads them from the matches)."""
    if not find.phrases:
        return False
    if connection.vendor == "postgresql":
        return not _pg_count(run_id, find, FEW_MATCHES)[1]
    return not capped_count(matching(run_id, find, limit=FEW_MATCHES + 1), FEW_MATCHES)[1]


def ids_among(run_id: int, find: Find, ids: list[int]) -> set[int]:
    """Which of these steps of the run match (a timeline window's highlights)."""
    if not ids or not find:
        return set()
    # Only the window's ids are looked for in the index.
    steps = matching(run_id, find, id_range=(min(ids), max(ids))).filter(id__in=ids)
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
