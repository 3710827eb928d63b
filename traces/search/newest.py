"""PostgreSQL: the newest rows holding the words, newest first, and how many hold
them (to a cap), for a table with a stored vector (index.RUNS, index.STEPS).

A GIN index has no order: "the newest 20 of a word's 220,000 matches" read from it
alone is all 220,000, sorted (~1 s at 1 M steps, 10 s at 10 M). Its keys are each
word with the row's id bucket (index.pg_column_index), so a word's matches in one
bucket are the postings of its keys there, and a bucket without the word is an
absent key. So:

1. the walk: coarse buckets (65,536 ids) newest first, each counted up to the cap
   (the rows holding the words' keys in that bucket, the phrase rechecked on the
   vector), until more than the cap are found or the first bucket is passed; one
   recursive statement, each bucket without the words ~0.05 ms;
2. the newest `limit` from the buckets that hold any, newest first: those with few
   matches together (read and sorted: at most a cap's worth), then a bucket with
   many a fine bucket (1,024 ids) at a time, newest first, until `limit` are found.

What is read is the walk's buckets' keys and at most about `limit` + COUNT_CAP
matching rows, wherever in id order the matches are. A word with fewer matches
than the cap walks every coarse bucket (16 at 1 M steps, 157 at 10 M)."""

from __future__ import annotations

import itertools

from .index import (
    COARSE_BITS,
    FINE_BITS,
    SearchedTable,
    pg_bucket,
    pg_in_bucket,
    pg_in_buckets,
    pg_query,
    pg_rechecked,
    planner_settings,
)

FINE_PER_COARSE = 1 << (COARSE_BITS - FINE_BITS)


def newest_matches(
    cursor, searched: SearchedTable, words: list[str], limit: int, cap: int
) -> tuple[list[int], int]:
    """Ids of the newest `limit` rows holding every word (highest id first; `limit` at
    most `cap` + 1), and how many rows hold them: all of them when at most `cap`, else
    more than `cap` (the matches of the buckets walked)."""
    ids, matches, _ = newest_keyed(cursor, searched, words, limit, cap)
    return ids, matches


def newest_keyed(
    cursor, searched: SearchedTable, words: list[str], limit: int, cap: int, key: str = ""
) -> tuple[list[int], int, list[int]]:
    """newest_matches, and which of those rows are keyed `key` (a step's key: the
    exact key probe's answer, read with the rows instead of looking them up again)."""
    cursor.execute(f"SELECT max(id) FROM {searched.table}")
    (top,) = cursor.fetchone()
    if top is None:
        return [], 0, []
    keyed = "key = %s" if key else "false"
    flag = [key] if key else []
    query = pg_query(words)
    # The words' keys in a bucket, and where the keys are not the answer (a phrase, a
    # long word) the vector's: one `%s` a word in the keys, two in the recheck.
    match = f"{{}} AND {pg_rechecked(searched, query)}"
    rechecked = [*words, *words]
    # Bitmap scans only: the buckets are the index's, and a walk down the primary key
    # (`ORDER BY id DESC LIMIT n`, the planner's guess) may read the whole table.
    with planner_settings(cursor, enable_seqscan=False, enable_indexscan=False):
        walk = match.format(pg_in_bucket(searched, "walk.bucket - 1", query))
        cursor.execute(_walk_sql(searched, walk, cap), [top >> COARSE_BITS, *words, *rechecked])
        walked = cursor.fetchall()
        buckets = [(bucket, found - before) for (_, before), (bucket, found) in
                   itertools.pairwise(walked) if found > before]  # fmt: skip
        matches = walked[-1][1]
        few, many, covered = [], None, 0
        for bucket, hits in buckets:
            if covered >= limit:
                break
            if hits > cap:
                many = bucket
                break
            few.append(bucket)
            covered += hits
        rows: list[tuple[int, bool]] = []
        if few:
            in_few = match.format(pg_in_buckets(searched, len(few), query))
            cursor.execute(
                f"SELECT id, {keyed} FROM {searched.table} WHERE {in_few} "
                f"ORDER BY id DESC LIMIT {int(limit)}",
                [*flag, *(p for bucket in few for p in (bucket, *words)), *rechecked],
            )
            rows = cursor.fetchall()
        if many is not None and len(rows) < limit:
            first = (many + 1) * FINE_PER_COARSE - 1
            in_many = match.format(pg_in_bucket(searched, "%s::bigint", query))
            cursor.execute(_fine_sql(searched, in_many, keyed, limit - len(rows)),
                           [first, first - FINE_PER_COARSE + 1, *flag, many, *words,
                            *rechecked])  # fmt: skip
            rows += cursor.fetchall()
    return [row[0] for row in rows], matches, [row[0] for row in rows if row[1]]


def _walk_sql(searched: SearchedTable, match: str, cap: int) -> str:
    """(bucket, matches found from the newest bucket to it), from the one past the
    newest (0 found) down, until more than `cap` are found or bucket 0 is read."""
    return (
        f"WITH RECURSIVE walk(bucket, found) AS ("
        f"SELECT %s::bigint + 1, 0::bigint UNION ALL "
        f"SELECT bucket - 1, found + (SELECT count(*) FROM (SELECT 1 FROM {searched.table} "
        f"WHERE {match} LIMIT {int(cap) + 1}) AS hit) "
        f"FROM walk WHERE bucket > 0 AND found <= {int(cap)}) "
        "SELECT bucket, found FROM walk ORDER BY bucket DESC"
    )


def _fine_sql(searched: SearchedTable, match: str, keyed: str, limit: int) -> str:
    """The newest `limit` matches of one coarse bucket, a fine bucket at a time from
    its newest (a nested loop: each fine bucket's matches sorted, the walk stopping at
    the limit)."""
    return (
        f"SELECT hit.id, hit.keyed FROM generate_series(%s::bigint, %s::bigint, -1) AS "
        f"fine(bucket) CROSS JOIN LATERAL (SELECT id, {keyed} AS keyed FROM {searched.table} "
        f"WHERE {pg_bucket(FINE_BITS)} = fine.bucket AND {match} ORDER BY id DESC) AS hit "
        f"LIMIT {int(limit)}"
    )
