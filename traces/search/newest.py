"""PostgreSQL: the newest rows holding the words, newest first, and how many hold
them (to a cap), for a searched table (index.RUNS, index.STEPS, index.LOGS), among
the rows a filter keeps (`Among`: the log search's level, run, step, time, page).

A GIN index has no order: "the newest 20 of a word's 220,000 matches" read from it
alone is all 220,000, sorted (~1 s at 1 M steps, 10 s at 10 M). Its index also holds
each row's id bucket (index.pg_bucket_index): the runs' and steps' each word with the
bucket (a bucket's matches are its words' entries there, a bucket without them an
absent entry), the log lines' the bucket beside the words (ANDed inside the index,
which skips the word's matches in other buckets). So:

1. the walk: coarse buckets (65,536 ids) newest first, each counted up to the cap
   (the rows of that bucket holding the words), until more than the cap are found or
   the first bucket is passed; one recursive statement, each bucket without the
   words ~0.01 ms (runs, steps) or 0.05-25 ms (log lines: the bucket's postings and
   the word's, as their rows interleave in the heap);
2. the newest `limit` from the buckets that hold any, newest first: those with few
   matches together (runs, steps: their words known, each estimated by the planner)
   or a bucket at a time (each read and sorted: at most a cap's worth), then a
   bucket with many a fine bucket (1,024 ids) at a time, newest first from the
   newest id, until `limit` are found.

What is read is the walk's buckets and at most about `limit` + COUNT_CAP matching
rows, wherever in id order the matches are. A word with fewer matches than the cap
walks every coarse bucket (16 at 1 M steps, 153 at 10 M).

A filter is ANDed to every read: inside the index when its column is in it (a log
line's level, index.SearchedTable.pg_keys), else tested on the bucket's matches
(a join, a time), which then reads every match of the buckets walked; a page's
cursor (`before`) starts the walk at its bucket, and the ids a filter's rows lie
between (a time range's lines, mostly written in time order) bound it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .index import (
    COARSE_BITS,
    FINE_BITS,
    SearchedTable,
    pg_bucket,
    pg_in_bucket,
    pg_in_buckets,
    pg_match,
    pg_query,
    pg_rechecked,
    planner_settings,
)

FINE_PER_COARSE = 1 << (COARSE_BITS - FINE_BITS)


@dataclass(frozen=True)
class Among:
    """The rows searched: the table as `alias` with `joins`; `where`, SQL ANDed to
    every read (" AND ..." over the alias and the joins, one `%s` per `params`); and
    ids below `before` (a page's cursor) and from `after` on (None: no bound), which
    also bound the buckets walked."""

    alias: str = "searched"
    joins: str = ""
    where: str = ""
    params: tuple = ()
    before: int | None = None
    after: int | None = None

    def clauses(self) -> tuple[str, list]:
        """`where` and the id bounds' clauses, and their parameters."""
        where, params = self.where, list(self.params)
        # `+ 0`: tested on the bucket's rows, not read as a range of the primary key
        # for a bitmap of every older row, in every bucket.
        for bound, value in (("<", self.before), (">=", self.after)):
            if value is not None:
                where, params = f"{where} AND {self.alias}.id + 0 {bound} %s", [*params, value]
        return where, params


EVERY_ROW = Among()


def newest_matches(
    cursor,
    searched: SearchedTable,
    words: list[str],
    limit: int,
    cap: int,
    among: Among = EVERY_ROW,
) -> tuple[list[int], int]:
    """Ids of the newest `limit` rows holding every word (highest id first; `limit` at
    most `cap` + 1), and how many rows hold them: all of them when at most `cap`, else
    more than `cap` (the matches of the buckets walked)."""
    ids, matches, _ = newest_keyed(cursor, searched, words, limit, cap, among=among)
    return ids, matches


def newest_keyed(
    cursor,
    searched: SearchedTable,
    words: list[str],
    limit: int,
    cap: int,
    key: str = "",
    among: Among = EVERY_ROW,
) -> tuple[list[int], int, list[int]]:
    """newest_matches, and which of those rows are keyed `key` (a step's key: the
    exact key probe's answer, read with the rows instead of looking them up again)."""
    if among.before is None:
        cursor.execute(f"SELECT max(id) FROM {searched.table}")
    else:
        cursor.execute(f"SELECT max(id) FROM {searched.table} WHERE id < %s", [among.before])
    (top,) = cursor.fetchone()
    if top is None:
        return [], 0, []
    prefix = f"{among.alias}."
    keyed = f"{prefix}key = %s" if key else "false"
    flag = [key] if key else []
    where, params = among.clauses()
    source = f"{searched.table} AS {among.alias} {among.joins}"
    rows_of = _rows_of(searched, among.alias, source)
    # Bitmap scans only: the buckets are the index's, and a walk down the primary key
    # (`ORDER BY id DESC LIMIT n`, the planner's guess) may read the whole table.
    after = among.after or 0
    with planner_settings(cursor, enable_seqscan=False, enable_indexscan=False):
        walk, walked, tested, phrases = _in_bucket(
            searched, COARSE_BITS, "walk.bucket - 1", words, prefix
        )
        counted = rows_of("1", walk + where, tested)
        cursor.execute(_walk_sql(counted, cap, after >> COARSE_BITS),
                       [top >> COARSE_BITS, *walked, *params, *phrases])  # fmt: skip
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
        if few and searched.pg_column:
            # Their words known, in one read: each estimated by the planner (of a
            # bucket known only at run time it guesses ~50,000 rows).
            query = pg_query(words)
            in_few = pg_in_buckets(searched, len(few), query, prefix)
            cursor.execute(
                f"SELECT {prefix}id, {keyed} FROM {source} WHERE {in_few} AND "
                f"{pg_rechecked(searched, query, prefix)}{where} "
                f"ORDER BY {prefix}id DESC LIMIT {int(limit)}",
                [*flag, *(p for bucket in few for p in (bucket, *words)), *words, *words,
                 *params],
            )  # fmt: skip
            rows = cursor.fetchall()
        elif few:
            in_few, matched, tested, phrases = _in_bucket(
                searched, COARSE_BITS, "bucket.number", words, prefix
            )
            hits = rows_of(f"{prefix}id, {keyed} AS keyed", in_few + where, tested)
            cursor.execute(_buckets_sql(hits, prefix, limit),
                           [few, *flag, *matched, *params, *phrases])  # fmt: skip
            rows = cursor.fetchall()
        if many is not None and len(rows) < limit:
            first = min((many + 1) * FINE_PER_COARSE, (top >> FINE_BITS) + 1)
            last = max(many * FINE_PER_COARSE, after >> FINE_BITS)
            fine = list(range(first - 1, last - 1, -1))
            in_fine, matched, tested, phrases = _in_bucket(
                searched, FINE_BITS, "bucket.number", words, prefix
            )
            hits = rows_of(f"{prefix}id, {keyed} AS keyed", in_fine + where, tested)
            cursor.execute(_buckets_sql(hits, prefix, limit - len(rows)),
                           [fine, *flag, *matched, *params, *phrases])  # fmt: skip
            rows += cursor.fetchall()
    return [row[0] for row in rows], matches, [row[0] for row in rows if row[1]]


def _in_bucket(
    searched: SearchedTable, bits: int, bucket: str, words: list[str], row: str
) -> tuple[str, list, str, list]:
    """SQL of the rows of a bucket (`bucket`: SQL of a bigint; `bits`: coarse or fine)
    holding every word, read together from the index, and its parameters: the words
    in the coarse bucket (and the fine bucket's entry) for runs and steps, the bucket
    AND the words' lexemes for the log lines; then what is tested on each row the
    filters keep (a log line's phrase; "" for runs and steps), and its parameters."""
    if not searched.pg_column:
        indexed, matched, tested, phrases = pg_match(searched, words, row)
        return f"{pg_bucket(bits, row)} = {bucket} AND {indexed}", matched, tested, phrases
    query = pg_query(words)
    coarse, fine = bucket, ""
    if bits == FINE_BITS:
        coarse = f"({bucket}) >> {COARSE_BITS - FINE_BITS}"
        fine = f"{pg_bucket(FINE_BITS, row)} = {bucket} AND "
    words_in = pg_in_bucket(searched, coarse, query, row)
    return f"{fine}{words_in} AND {pg_rechecked(searched, query, row)}", [*words] * 3, "", []


def _rows_of(searched: SearchedTable, alias: str, source: str):
    """A function of (the columns, the rows' SQL over the source, what is then tested
    on each of them): SQL selecting those columns of the rows (`source`: the table as
    `alias` and its joins). A test is made on the rows the filters kept (a subquery
    the planner keeps whole, OFFSET 0): as one WHERE, a log line's phrase is tested
    (its vector computed again, ~5 µs) on every line the index gives before a join
    (a step's name) drops it."""

    def rows(columns: str, match: str, tested: str) -> str:
        if not tested:
            return f"SELECT {columns} FROM {source} WHERE {match}"
        kept = ", ".join(f"{alias}.{column}" for column in ("id", *searched.columns))
        return (
            f"SELECT {columns} FROM (SELECT {kept} FROM {source} WHERE {match} OFFSET 0) "
            f"AS {alias} WHERE {tested}"
        )

    return rows


def _walk_sql(counted: str, cap: int, lowest: int) -> str:
    """(bucket, matches found from the newest bucket to it), from the one past the
    newest (0 found) down, until more than `cap` are found or bucket `lowest` is read
    (`counted`: the rows of bucket `walk.bucket - 1`)."""
    return (
        f"WITH RECURSIVE walk(bucket, found) AS ("
        f"SELECT %s::bigint + 1, 0::bigint UNION ALL "
        f"SELECT bucket - 1, found + (SELECT count(*) FROM ({counted} "
        f"LIMIT {int(cap) + 1}) AS counted) "
        f"FROM walk WHERE bucket > {int(lowest)} AND found <= {int(cap)}) "
        "SELECT bucket, found FROM walk ORDER BY bucket DESC"
    )


def _buckets_sql(hits: str, row: str, limit: int) -> str:
    """The newest `limit` matches of the buckets listed in the first parameter
    (`hits`: the id and keyed flag of the rows of bucket `bucket.number`, coarse or
    fine), newest first, a bucket at a time (a nested loop: each bucket's matches
    sorted, the walk stopping at the limit). Each bucket is an equality to the loop's
    value, so the index reads bucket and words together: as `= ANY(array)`, the
    planner may read a phrase's whole posting list instead (it guesses a phrase
    matches one row)."""
    return (
        f"SELECT hit.id, hit.keyed FROM unnest(%s::bigint[]) AS bucket(number) "
        f"CROSS JOIN LATERAL ({hits} ORDER BY {row}id DESC) AS hit LIMIT {int(limit)}"
    )
