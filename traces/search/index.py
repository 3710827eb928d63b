"""The full-text indexes behind the search, kept in the same transaction as the rows.

SQLite: an FTS5 table per searched model. Runs (one INSERT each) are indexed by
triggers. Steps and log lines are written thousands at a time by executemany,
where an FTS5 insert trigger costs ~60 µs a row (FTS5 flushes at each
statement's end), so the store indexes the children of the runs a file wrote
with one INSERT ... SELECT per table when it settles the file (`index_runs`,
~5 µs a row): a written run's children are all new (a rewrite deletes the old
ones first). Deletes and updates are triggers, so every path (re-sync, delete,
prune) keeps the index. These FTS tables keep their own copy of the indexed text,
so deleting a row never indexed (a run written twice in one file, a row written
by other means) is a harmless no-op; the runs' table, which a trigger fills on
every insert, holds only the index (`content=''`).

PostgreSQL: a GIN index on a `to_tsvector('simple', ...)` expression of the same
columns, which PostgreSQL keeps itself (the log lines); for runs and steps (a run's
attributes are long, and a word can match tens of thousands of steps) a stored
`tsvector` column instead (`pg_column`),
computed by a BEFORE INSERT/UPDATE trigger in the statement that writes the row
(COPY included): a phrase's match must be rechecked on the row, and the recheck then
reads the stored vector instead of tokenising the row's text again (~25 µs a row: a
word matching 40,000 steps took a second), and a plain B-tree walk (newest first, a
run's steps in order) can test rows for a word as it goes. Every GIN index also
holds each row's id bucket (pg_bucket_index), so a search reads a common word's
newest matches a bucket at a time (newest.py): the runs' and steps' index is of each
word with the row's bucket, `8_fetch` (their "bucketed words"); the log lines' holds
the bucket beside the words, and their level and step name (`pg_keys`), filters of
the log search ANDed inside the index.

Steps are also found by the VALUES (strings and numbers, not the keys) of their
attributes and input (`values`): a customer id or an actor pasted into the search
finds the steps that carry it. Both databases index the values' text joined by
spaces, bounded like the other columns (SQLite's json_tree walks a value in its
order, PostgreSQL's jsonb in its own and spells it as a JSON array, so only a value
near or past the first VALUE_CHARS of text may be indexed on one and not the other).

Long values are indexed up to INDEXED_CHARS: an id or an error's words sit at its
start, and a 100 MB message must not be tokenised whole at ingest."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from dataclasses import dataclass

from django.db import connection, transaction

INDEXED_CHARS = 4096
# A step's attribute or input values: their first VALUE_CHARS of text (ids, names,
# actors come first; tokenising a 4 KiB JSON text at every insert cost PostgreSQL
# ~100 µs a step, bench_pg_search_vector.py).
VALUE_CHARS = 1024


@dataclass(frozen=True)
class SearchedTable:
    table: str  # the model's table
    columns: tuple[str, ...]  # what is searched, in its own words
    fts: str  # the SQLite FTS5 table
    gin: str  # the PostgreSQL index
    indexed_by_store: bool  # SQLite: new rows indexed by index_new_rows, not a trigger
    values: tuple[str, ...] = ()  # JSON columns whose values (not keys) are searched
    pg_column: str = ""  # PostgreSQL: the stored tsvector column (else an expression index)
    # PostgreSQL: columns of the row in the GIN index too (btree_gin), between the id
    # buckets and the words, so a filter on them is ANDed inside the index.
    pg_keys: tuple[str, ...] = ()
    # SQLite: columns of the row in the FTS5 table too, after the searched ones, so
    # a filter on them is matched inside FTS5 (fts_key_match); the words are then
    # matched in the searched columns alone (fts_query's `columns`).
    fts_keys: tuple[str, ...] = ()

    @property
    def fts_columns(self) -> tuple[str, ...]:
        return (*self.columns, *self.values, *self.fts_keys)

    def sqlite_values(self, row: str) -> str:
        plain = [f"substr({row}.{column}, 1, {INDEXED_CHARS})" for column in self.columns]
        keys = [f"{row}.{key}" for key in self.fts_keys]
        values = [sqlite_json_words(f"{row}.{name}") for name in self.values]
        return ", ".join([*plain, *values, *keys])

    def pg_text(self, row: str = "") -> str:
        """The indexed text as SQL (`row`: a prefix for the columns, `NEW.` in a trigger)."""
        parts = [
            f"left(coalesce({row}{column}::text, ''), {INDEXED_CHARS})" for column in self.columns
        ]
        parts += [pg_json_words(f"{row}{name}") for name in self.values]
        return " || ' ' || ".join(parts)

    def pg_document(self, row: str = "") -> str:
        """The indexed vector as a query must name it for the index to serve it: the
        stored column, or the indexed expression (`row`: a prefix for the columns,
        an alias and a dot)."""
        return f"{row}{self.pg_column}" if self.pg_column else self.pg_expression(row)

    def pg_expression(self, row: str = "") -> str:
        """The vector of a row's text. Punctuation is made a space first, so words split
        as SQLite's FTS5 splits them (PostgreSQL's parser keeps `step.completed` or
        `a@b.io` whole)."""
        return f"to_tsvector('simple'::regconfig, {pg_words(self.pg_text(row))})"


# A JSON value's strings and numbers: its searched text (booleans and nulls, which
# the two databases spell differently, are left out).
_PG_LEAVES = '\'strict $.** ? (@.type() == "string" || @.type() == "number")\''


def sqlite_json_words(column: str) -> str:
    return (
        f"substr((SELECT group_concat(atom, ' ') FROM json_tree({column}) "
        f"WHERE type IN ('text', 'integer', 'real')), 1, {VALUE_CHARS})"
    )


def pg_json_words(column: str) -> str:
    """The values as the text of a jsonb array (`["cus_1", 2]`), cut at VALUE_CHARS
    before any regular expression reads it: its quotes and commas are punctuation, and
    its escapes (`\\n`, `\\u0007`) are made spaces, not letters."""
    leaves = f"jsonb_path_query_array(coalesce({column}::jsonb, 'null'::jsonb), {_PG_LEAVES})"
    cut = f"left({leaves}::text, {VALUE_CHARS})"
    return f"regexp_replace({cut}, '\\\\(u[0-9a-fA-F]{{4}}|.)', ' ', 'g')"


def pg_words(text_sql: str) -> str:
    """SQL of `text_sql` with every run of punctuation made one space."""
    return f"regexp_replace({text_sql}, '[^[:alnum:]]+', ' ', 'g')"


def pg_match(
    searched: SearchedTable, words: list[str], row: str = ""
) -> tuple[str, list, str, list]:
    """SQL matching rows holding every word, each a tsquery phrase split as the
    documents are, in two parts: what the index answers, and what is then tested on
    each row it gives; each with its parameters.

    An expression's index (the log lines) is matched by each word's lexemes, which
    it answers alone, and the phrase (their order) is then tested on the row only
    for a word of several: a phrase from the index must be rechecked on every row it
    gives, its vector computed again (~5 µs), before the statement's other filters.
    As a plain test the planner orders it after a cheaper test of the same row (a
    time), but not after a join's (a step's name, a run's type): a caller tests it
    on the rows those keep (a subquery). A word of one lexeme has nothing to test
    (its `phrase = lexemes` is folded to true). A stored vector's rows: "true"."""
    if searched.pg_column:
        match, matched = pg_phrase_match(searched.pg_document(row), words)
        return match, matched, "true", []
    document, phrase = searched.pg_document(row), PHRASE
    lexemes = f"plainto_tsquery('simple'::regconfig, {pg_words('%s')})"
    indexed = " AND ".join(f"{document} @@ {lexemes}" for _ in words)
    each = f"({phrase} = {lexemes} OR ts_match_vq({document}, {phrase}))"
    tested = " AND ".join(each for _ in words)
    return indexed, list(words), tested, [word for word in words for _ in range(3)]


def pg_phrase_match(document: str, words: list[str]) -> tuple[str, list]:
    """SQL matching a vector (`document`) holding every word as a phrase, and its
    parameters."""
    return " AND ".join(f"{document} @@ {PHRASE}" for _ in words), list(words)


# A word as a tsquery phrase of its tokens, split as the documents are (one `%s`).
PHRASE = f"phraseto_tsquery('simple'::regconfig, {pg_words('%s')})"


def pg_query(words: list[str]) -> str:
    """SQL of one tsquery holding every word (one `%s` a word), each a phrase. A word
    with no lexeme (`½`: all punctuation to PostgreSQL) makes it NULL, which matches
    nothing, as the word matches nothing alone; `&&` would drop its empty query."""
    phrase = f"nullif({PHRASE}, ''::tsquery)"
    return f"({' && '.join([phrase] * len(words))})"


def fts_query(words: list[str], columns: tuple[str, ...] = ()) -> str:
    """An FTS5 query of every word, each a phrase tokenised as the index was (quotes
    doubled: no word is read as FTS5 syntax); in `columns` alone when given (a table
    with fts_keys: a word must not match a key's column)."""
    within = f"{{{' '.join(columns)}}} : " if columns else ""
    return " AND ".join(f"{within}{fts_phrase(word)}" for word in words)


def fts_phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


# A key's value FTS5 surely makes a token of (one ASCII letter or digit is one).
_TOKEN = re.compile(r"[A-Za-z0-9]")


def fts_key_match(searched: SearchedTable, key: str, value: str) -> str:
    """An FTS5 query ANDed to the words': the rows whose `key` column holds `value`'s
    tokens as a phrase (FTS5 folds case: a superset of the rows whose key equals it,
    the filter's exact test is kept), or "" when `value` may have none (a phrase of
    no token matches no row)."""
    if key not in searched.fts_keys or not _TOKEN.search(value or ""):
        return ""
    return f" AND {{{key}}} : {fts_phrase(value)}"


RUNS = SearchedTable(
    "traces_run",
    ("external_id", "name", "type", "trigger", "actor", "error", "attributes"),
    "traces_run_search",
    "run_search_bucketed",
    indexed_by_store=False,
    pg_column="search_doc",
)
STEPS = SearchedTable(
    "traces_step",
    ("key", "name", "type", "error"),
    "traces_step_search",
    "step_search_bucketed",
    indexed_by_store=True,
    values=("attributes", "input"),
    pg_column="search_doc",
)
LOGS = SearchedTable(
    "traces_logentry",
    ("message",),
    "traces_log_search",
    "log_search_bucket",
    indexed_by_store=True,
    # The level (0034; SQLite 0041) and the step's name (0043): filters ANDed inside.
    pg_keys=("level", "step_name"),
    fts_keys=("level", "step_name"),
)
TABLES = (RUNS, STEPS, LOGS)
# The log lines' index before migration 0043 (the level its one key), which the
# migrations before it build: the lines have no step_name yet.
LOGS_0041 = dataclasses.replace(LOGS, pg_keys=("level",), fts_keys=("level",))


def index_runs(cursor, run_ids: list[int]) -> None:
    """SQLite: index the steps and log lines of runs the store has just written
    (see the module's docstring); PostgreSQL's indexes keep themselves."""
    if not run_ids or cursor.db.vendor != "sqlite":
        return
    # In id order: FTS5 gathers entries in memory while their rowids ascend and
    # writes them out at the statement's end, but a lower rowid makes it write out
    # first; read through a run-led index (by duration, by key), nearly every row
    # became a segment to merge (6x the CPU).
    for searched in TABLES:
        if searched.indexed_by_store:
            names = ", ".join(searched.fts_columns)
            cursor.execute(
                f"INSERT INTO {searched.fts}(rowid, {names}) "
                f"SELECT id, {searched.sqlite_values(searched.table)} FROM {searched.table} "
                "WHERE run_id IN (SELECT value FROM json_each(%s)) ORDER BY id",
                [json.dumps(run_ids)],
            )


def sqlite_triggers(searched: SearchedTable) -> list[str]:
    """The triggers that keep a table's FTS index (IF NOT EXISTS: see ensure_triggers)."""
    names = ", ".join(searched.fts_columns)
    fts, table = searched.fts, searched.table
    insert = f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {searched.sqlite_values('new')});"
    if searched.indexed_by_store:
        delete = f"DELETE FROM {fts} WHERE rowid = old.id;"
    else:
        delete = (
            f"INSERT INTO {fts}({fts}, rowid, {names}) "
            f"VALUES ('delete', old.id, {searched.sqlite_values('old')});"
        )
    create = "CREATE TRIGGER IF NOT EXISTS"
    triggers = [
        f"{create} {fts}_delete AFTER DELETE ON {table} BEGIN {delete} END",
        f"{create} {fts}_update AFTER UPDATE OF {names} ON {table} BEGIN {delete} {insert} END",
    ]
    if not searched.indexed_by_store:
        triggers.append(f"{create} {fts}_insert AFTER INSERT ON {table} BEGIN {insert} END")
    return triggers


def ensure_triggers(connection) -> None:
    """Put back the triggers a migration dropped: Django alters a SQLite table by
    building a new one and dropping the old, and its triggers go with it (the rows
    and their ids are copied, so the index stays right). Run after every migrate."""
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        for searched in TABLES:
            if searched.fts in tables and searched.table in tables:
                for statement in sqlite_triggers(searched):
                    cursor.execute(statement)


def sqlite_create(searched: SearchedTable) -> list[str]:
    names = ", ".join(searched.fts_columns)
    # The steps' table keeps its text, so a delete needs no values (see above).
    options = "" if searched.indexed_by_store else ", content=''"
    return [
        f"CREATE VIRTUAL TABLE {searched.fts} USING fts5({names}{options})",
        *sqlite_triggers(searched),
        f"INSERT INTO {searched.fts}(rowid, {names}) "
        f"SELECT id, {searched.sqlite_values(searched.table)} FROM {searched.table}",
    ]


def sqlite_drop(searched: SearchedTable) -> list[str]:
    fts = searched.fts
    return [
        *(f"DROP TRIGGER IF EXISTS {fts}_{event}" for event in ("insert", "delete", "update")),
        f"DROP TABLE IF EXISTS {fts}",
    ]


def pg_create(searched: SearchedTable) -> list[str]:
    column = pg_column_create(searched) if searched.pg_column else []
    return [*column, *pg_bucket_index(searched)]


def pg_column_create(searched: SearchedTable) -> list[str]:
    """The stored vector column and the trigger that computes it as a row is written
    (or a searched column updated); rows already there keep a NULL until
    pg_column_fill. Every statement can be run again."""
    table, column = searched.table, searched.pg_column
    function = f"{table}_{column}"
    names = ", ".join(searched.fts_columns)
    return [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} tsvector",
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN NEW.{column} := {searched.pg_expression('NEW.')}; RETURN NEW; END $$",
        f"DROP TRIGGER IF EXISTS {function} ON {table}",
        f"CREATE TRIGGER {function} BEFORE INSERT OR UPDATE OF {names} ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]


def pg_column_fill(searched: SearchedTable, first: int, last: int) -> str:
    """Computes the vector of the rows with ids first .. last that have none yet."""
    return (
        f"UPDATE {searched.table} SET {searched.pg_column} = "
        f"{searched.pg_expression()} WHERE id BETWEEN {int(first)} AND {int(last)} "
        f"AND {searched.pg_column} IS NULL"
    )


# PostgreSQL: the GIN index also holds each row's id bucket, a coarse one (65,536
# ids) and a fine one (1,024 ids), so the newest matches of a word in 200,000 rows
# are read a bucket at a time, newest first (newest.py), not all of them. A bigint
# (or a varchar of pg_keys) in a GIN index is btree_gin's (a contrib extension,
# trusted: a database owner may create it). The runs' and steps' index holds each
# word with the coarse bucket, `8_fetch` (the row's "bucketed words"), and the fine
# bucket: a word's matches in a coarse bucket are one entry's postings, and a bucket
# without the word is the look-up of an absent entry (~0.01 ms). An index of the
# bucket beside the words (0030's, the log lines') intersects the bucket's postings
# with the word's, and where their rows interleave in the heap a bucket without a
# common word cost 1-25 ms at 1 M steps (RESULTS §16a).
COARSE_BITS = 16
FINE_BITS = 10
# A bucketed word holds this many characters of its word at most (a tsvector's lexeme
# has at most 2,047 bytes): a longer word's is its start, the match rechecked on the
# vector.
WORD_CHARS = 500
BUCKETED = "tracer_bucketed_words"
BUCKETED_QUERY = "tracer_bucketed_query"
BUCKETED_EXACT = "tracer_bucketed_exact"


def pg_bucket(bits: int, row: str = "") -> str:
    return f"({row}id >> {bits})"


def pg_bucketed_functions() -> list[str]:
    """The bucketed words' SQL functions (IMMUTABLE; the usual cases inlined by the
    planner):

    - `tracer_bucketed_words(id, vector)`: a row's words each prefixed by its coarse
      bucket (`'8_fetch' '8_charges'`), cut at WORD_CHARS characters: the stripped
      vector's text rewritten (~4 µs a row at ingest), or, when its words are longer
      than that together, word by word (`..._cut`, ~7 µs).
    - `tracer_bucketed_query(bucket, query)`: a query of words, phrases and prefixes
      (`'a' <-> 'b':* & 'c'`) as the bucketed words in that bucket of the rows matching
      it (`'8_a' & '8_b':* & '8_c'`): by replace() (~1 µs), or, for a query longer than
      WORD_CHARS, word by word (`..._cut`; a regular expression's bounded repetition
      cost ~70 µs a call, and the walk calls it a bucket).
    - `tracer_bucketed_exact(query)`: whether the bucketed words are the query's answer
      (words and prefixes shorter than WORD_CHARS, no phrase); else a match is
      rechecked on the vector (a phrase's order, a long word's end).

    The words are the 'simple' parser's, of text whose punctuation was made spaces
    (pg_words; find's letters-and-digits tokens): none holds a space, a quote or an
    operator's `<`, and in a vector's or a query's text each is quoted, opening after a
    space, `(`, `!` or the start.

    The bucketed words are PARALLEL RESTRICTED (they are safe), so a scan that reads
    them runs in the leader alone: the planner cannot estimate a query of buckets
    known only at run time (the walk's bucket, every bucket), guessed ~50,000 rows
    where a few hundred are read, and planned two workers whose start cost ~10 ms of a
    1-ms read. Both functions are marked: a query names the one (the planner, finding
    nothing restricted in a query, does not look again once it is inlined) and its
    inlined body keeps the other. Changing what these functions give needs the
    indexes built again.

    Their bodies are SQL-standard (`RETURN`), parsed once when created: a body in a
    string is parsed again each time it is inlined, with the session's search_path,
    which pg_restore empties and PostgreSQL 17's maintenance (ANALYZE, VACUUM,
    REINDEX) narrows to pg_catalog, so an index of them could not be built there."""
    bucket = "(id >> 16)::text || '_'"
    words = "strip(vector)::text"  # 'a' 'b'
    each = f"('''' || {bucket} || substr(replace({words}, ''' ''', ''' ''' || {bucket}), 2))"
    operators = "regexp_replace(query::text, '<(-|[0-9]+)>', '&', 'g')"  # a phrase: its words
    query = f"' ' || {operators}"
    for before in " (!":  # a word's opening quote, then the bucket
        query = f"replace({query}, '{before}''', '{before}''' || bucket || '_')"
    # A query's text split at its quotes: its words are the even parts.
    parts = "unnest(string_to_array(query::text, '''')) WITH ORDINALITY AS part(text, n)"
    return [
        f"CREATE OR REPLACE FUNCTION {BUCKETED}_cut(id bigint, vector tsvector) "
        "RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL RESTRICTED RETURN "
        f"array_to_tsvector(ARRAY(SELECT {bucket} || left(word, {WORD_CHARS}) "
        "FROM unnest(tsvector_to_array(vector)) AS word))",
        f"CREATE OR REPLACE FUNCTION {BUCKETED}(id bigint, vector tsvector) RETURNS tsvector "
        "LANGUAGE sql IMMUTABLE PARALLEL RESTRICTED RETURN CASE WHEN length(vector) = 0 "
        f"THEN vector WHEN octet_length({words}) > {WORD_CHARS} THEN {BUCKETED}_cut(id, vector) "
        f"ELSE {each}::tsvector END",
        f"CREATE OR REPLACE FUNCTION {BUCKETED_QUERY}_cut(bucket bigint, query tsquery) "
        "RETURNS tsquery LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN (SELECT string_agg("
        "CASE WHEN mod(n, 2) = 0 THEN bucket || '_' || left(text, "
        f"{WORD_CHARS}) ELSE regexp_replace(text, '<(-|[0-9]+)>', '&', 'g') END, '''' "
        f"ORDER BY n)::tsquery FROM {parts})",
        f"CREATE OR REPLACE FUNCTION {BUCKETED_QUERY}(bucket bigint, query tsquery) "
        "RETURNS tsquery LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN CASE WHEN "
        f"length(query::text) > {WORD_CHARS} THEN {BUCKETED_QUERY}_cut(bucket, query) "
        f"ELSE ({query})::tsquery END",
        f"CREATE OR REPLACE FUNCTION {BUCKETED_EXACT}(query tsquery) RETURNS boolean "
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN "
        f"length(query::text) <= {WORD_CHARS} AND strpos(query::text, '<') = 0 "
        "AND strpos(query::text, '!') = 0",
    ]


def pg_bucketed(searched: SearchedTable, row: str = "") -> str:
    """A row's bucketed words, as a query must name them for the index to serve it
    (`row`: a prefix for the columns, an alias and a dot)."""
    return f"{BUCKETED}({row}id, {row}{searched.pg_column})"


def pg_in_bucket(searched: SearchedTable, bucket: str, query: str, row: str = "") -> str:
    """SQL: the row is in coarse bucket `bucket` (SQL of a bigint) and holds the words
    of `query` (SQL of a tsquery) there; the index serves it. A match is then to be
    rechecked (pg_rechecked)."""
    return f"{pg_bucketed(searched, row)} @@ {BUCKETED_QUERY}({bucket}, {query})"


def pg_rechecked(searched: SearchedTable, query: str, row: str = "") -> str:
    """SQL: a row whose bucketed words hold `query` (SQL of a tsquery) matches it:
    always, when they answer it (words alone, none cut: the planner folds the test of
    a query it knows), else as its vector says (a phrase's order, a long word's end)."""
    return f"({BUCKETED_EXACT}({query}) OR {searched.pg_document(row)} @@ {query})"


def pg_in_buckets(searched: SearchedTable, buckets: int, query: str, row: str = "") -> str:
    """pg_in_bucket in any of `buckets` buckets, each a `%s` (a bigint) followed by the
    query's own: one bitmap index scan reading each bucket's words in turn. The
    buckets given, the planner works the query out and estimates it from the index's
    statistics (of a set known only at run time it guesses ~50,000 rows)."""
    each = ", ".join([f"{BUCKETED_QUERY}(%s::bigint, {query})"] * buckets)
    return f"{pg_bucketed(searched, row)} @@ ANY(ARRAY[{each}])"


def pg_anywhere(searched: SearchedTable, query: str, row: str = "") -> str:
    """The words in every bucket that holds a row of the table (a set known at run
    time: see pg_in_buckets), pg_present_buckets' buckets."""
    return (
        f"{pg_bucketed(searched, row)} @@ ANY(ARRAY({pg_present_buckets(searched)} "
        f"SELECT {BUCKETED_QUERY}(bucket, {query}) FROM present WHERE bucket IS NOT NULL))"
    )


def pg_present_buckets(searched: SearchedTable) -> str:
    """A recursive CTE `present(bucket, …)` of the coarse buckets that hold a row of
    the table (its last row's bucket NULL when the table is empty). From its lowest
    id's bucket to its highest's each in turn when they are at most SPARSE_BUCKETS
    apart (a store's ids from one sequence: 16 buckets at 1 M steps); further apart,
    a bucket at a time on the primary key (the next bucket's lowest id, one probe
    each, ~8 µs): a store whose ids jump (by 2**32, say) reads the buckets it has, not
    the 65,536 between (its words' ~16 µs each, ~1 s)."""
    table, bits = searched.table, COARSE_BITS
    ends = f"((SELECT {{}}(id) FROM {table}) >> {bits})"
    low, high = ends.format("min"), ends.format("max")
    following = f"(SELECT min(id) FROM {table} WHERE id >= (bucket + 1) << {bits}) >> {bits}"
    # The ends read once (OFFSET 0: not pulled up into the expressions that use them).
    return (
        f"WITH RECURSIVE present(bucket, high, dense) AS (SELECT low, high, high - low <= "
        f"{SPARSE_BUCKETS} FROM (SELECT {low} AS low, {high} AS high OFFSET 0) AS ends "
        f"UNION ALL SELECT CASE WHEN dense THEN bucket + 1 ELSE {following} END, high, dense "
        "FROM present WHERE bucket < high)"
    )


# Buckets between a table's lowest id and its highest taken in turn, not looked up.
SPARSE_BUCKETS = 256


def pg_bucket_index(searched: SearchedTable) -> list[str]:
    """The GIN index of a searched table: its rows' bucketed words and fine buckets
    (a stored vector: runs, steps), else the coarse and fine buckets, the pg_keys
    columns and the words (the log lines)."""
    if searched.pg_column:
        columns = f"{pg_bucket(FINE_BITS)}, {pg_bucketed(searched)}"
        functions = pg_bucketed_functions()
    else:
        columns = ", ".join(
            (pg_bucket(COARSE_BITS), pg_bucket(FINE_BITS), *searched.pg_keys,
             searched.pg_document())
        )  # fmt: skip
        functions = []
    return [
        "CREATE EXTENSION IF NOT EXISTS btree_gin",
        *functions,
        f"CREATE INDEX IF NOT EXISTS {searched.gin} ON {searched.table} USING gin ({columns}) "
        f"WITH ({PENDING})",
    ]


# A GIN index's new entries wait in a pending list (up to gin_pending_list_limit, 4 MB
# by default) until a flush merges them, and every scan of the index reads the whole
# list: at 1 M steps, the 5,000 steps of an ingest not flushed yet added ~40 ms to a
# common word's search (~36 scans: the walk, the newest fine buckets), with either
# index. Kept to 256 kB, at most ~5 ms; an insert costs ~1.5 µs more (flushed more
# often), and without a list (fastupdate off) ~34 µs more (RESULTS §16a).
PENDING = "gin_pending_list_limit = 256"


def pg_bucket_index_swap(cursor, searched: SearchedTable, old: str) -> None:
    """Migrations: the bucket index built, then `old` (the words' GIN index it replaces)
    dropped, so the search keeps an index meanwhile; then ANALYZE, the planner's
    statistics of the bucket expressions."""
    for statement in pg_bucket_index(searched):
        cursor.execute(statement)
    cursor.execute(f"DROP INDEX IF EXISTS {old}")
    cursor.execute(f"ANALYZE {searched.table}")


def pg_bucket_index_unswap(cursor, searched: SearchedTable, old: str) -> None:
    """The way back: `old`, a GIN index of the words alone, built again, then the
    bucket index dropped."""
    cursor.execute(
        f"CREATE INDEX IF NOT EXISTS {old} ON {searched.table} USING gin ({searched.pg_document()})"
    )
    cursor.execute(f"DROP INDEX IF EXISTS {searched.gin}")


def pg_drop(searched: SearchedTable) -> list[str]:
    statements = [f"DROP INDEX IF EXISTS {searched.gin}"]
    if searched.pg_column:
        function = f"{searched.table}_{searched.pg_column}"
        statements += [
            f"DROP TRIGGER IF EXISTS {function} ON {searched.table}",
            f"DROP FUNCTION IF EXISTS {function}()",
            f"ALTER TABLE {searched.table} DROP COLUMN IF EXISTS {searched.pg_column}",
        ]
    return statements


def create_statements(vendor: str, tables: tuple[SearchedTable, ...] = TABLES) -> list[str]:
    make = {"sqlite": sqlite_create, "postgresql": pg_create}[vendor]
    return [statement for searched in tables for statement in make(searched)]


def drop_statements(vendor: str) -> list[str]:
    drop = {"sqlite": sqlite_drop, "postgresql": pg_drop}[vendor]
    statements = [statement for searched in TABLES for statement in drop(searched)]
    return statements + (pg_bucketed_drop() if vendor == "postgresql" else [])


def pg_bucketed_drop() -> list[str]:
    """The bucketed words' functions dropped (after the indexes that use them)."""
    signatures = (f"{BUCKETED}(bigint, tsvector)", f"{BUCKETED}_cut(bigint, tsvector)",
                  f"{BUCKETED_QUERY}(bigint, tsquery)", f"{BUCKETED_QUERY}_cut(bigint, tsquery)",
                  f"{BUCKETED_EXACT}(tsquery)")  # fmt: skip
    return [f"DROP FUNCTION IF EXISTS {signature}" for signature in signatures]


@contextlib.contextmanager
def planner_settings(cursor, **settings: bool):
    """PostgreSQL: the statements run inside it planned with these settings
    (`enable_seqscan=False`: off or on). A full-text match is read from
    its GIN index only when sequential scans are off: a common word's matches
    otherwise look quicker to find by reading the table and testing each row's
    vector, however far into it they are. LOCAL to a transaction of its own; inside
    an outer one, its savepoint is rolled back on the way out, which puts back the
    settings as they were (PostgreSQL undoes a SET LOCAL with the savepoint before
    it), so what runs inside must be reads. Other databases: nothing is set."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        cursor.execute(
            "; ".join(
                f"SET LOCAL {name} = {'on' if value else 'off'}" for name, value in settings.items()
            )
        )
        yield
        # Rolled back, not committed: the settings go with the savepoint (or the
        # transaction) at once.
        transaction.set_rollback(True)
