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
run's steps in order) can test rows for a word as it goes. Their GIN index is of
each word with the row's id bucket, `8_fetch` (pg_column_index), so the search reads
a common word's newest matches a bucket at a time (newest.py).

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
import json
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

    @property
    def fts_columns(self) -> tuple[str, ...]:
        return (*self.columns, *self.values)

    def sqlite_values(self, row: str) -> str:
        plain = [f"substr({row}.{column}, 1, {INDEXED_CHARS})" for column in self.columns]
        return ", ".join([*plain, *(sqlite_json_words(f"{row}.{name}") for name in self.values)])

    def pg_text(self, row: str = "") -> str:
        """The indexed text as SQL (`row`: a prefix for the columns, `NEW.` in a trigger)."""
        parts = [
            f"left(coalesce({row}{column}::text, ''), {INDEXED_CHARS})" for column in self.columns
        ]
        parts += [pg_json_words(f"{row}{name}") for name in self.values]
        return " || ' ' || ".join(parts)

    def pg_document(self) -> str:
        """The indexed vector as a query must name it for the index to serve it: the
        stored column, or the indexed expression."""
        return self.pg_column or self.pg_expression()

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


def pg_match(searched: SearchedTable, words: list[str]) -> str:
    """SQL matching rows holding every word (one `%s` a word), each a tsquery phrase
    split as the documents are; an expression index serves it (runs' and steps' stored
    vectors are found through their keys: newest.py)."""
    return " AND ".join(f"{searched.pg_document()} @@ {PHRASE}" for _ in words)


# A word as a tsquery phrase of its tokens, split as the documents are (one `%s`).
PHRASE = f"phraseto_tsquery('simple'::regconfig, {pg_words('%s')})"


def pg_query(words: list[str]) -> str:
    """SQL of one tsquery holding every word (one `%s` a word), each a phrase."""
    return f"({' && '.join([PHRASE] * len(words))})"


def fts_query(words: list[str]) -> str:
    """An FTS5 query of every word, each a phrase tokenised as the index was (quotes
    doubled: no word is read as FTS5 syntax)."""
    return " AND ".join('"' + word.replace('"', '""') + '"' for word in words)


RUNS = SearchedTable(
    "traces_run",
    ("external_id", "name", "type", "trigger", "actor", "error", "attributes"),
    "traces_run_search",
    "run_search_keys",
    indexed_by_store=False,
    pg_column="search_doc",
)
STEPS = SearchedTable(
    "traces_step",
    ("key", "name", "type", "error"),
    "traces_step_search",
    "step_search_keys",
    indexed_by_store=True,
    values=("attributes", "input"),
    pg_column="search_doc",
)
LOGS = SearchedTable(
    "traces_logentry", ("message",), "traces_log_search", "log_search", indexed_by_store=True
)
TABLES = (RUNS, STEPS, LOGS)


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
    if searched.pg_column:
        return [*pg_column_create(searched), *pg_column_index(searched)]
    return [f"CREATE INDEX {searched.gin} ON {searched.table} USING gin ({searched.pg_document()})"]


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


# PostgreSQL: the stored vector's GIN index is of its words each prefixed by the row's
# coarse id bucket (65,536 ids), `8_fetch` (the row's "keys"), and of its fine bucket
# (1,024 ids). A word's matches in one coarse bucket are then one key's postings, and
# a bucket without the word costs the look-up of an absent key (~0.05 ms), where an
# index of (bucket, word) intersected the bucket's postings with the word's, whose
# interleaving in the heap made a bucket without the word cost up to 10-25 ms at 1 M
# steps (RESULTS §16a). So the newest matches of a word in 200,000 rows are read a
# bucket at a time, newest first (newest.py), not all of them. A bigint in a GIN
# index is btree_gin's (a contrib extension, trusted: a database owner may create it).
COARSE_BITS = 16
FINE_BITS = 10
# A key holds this many characters of its word at most (a tsvector's lexeme has at
# most 2,047 bytes): a longer word's key is its start, the match rechecked on the vector.
KEY_CHARS = 500
KEYS = "tracer_search_keys"
KEYS_QUERY = "tracer_search_keys_query"
KEYS_EXACT = "tracer_search_keys_exact"


def pg_bucket(bits: int) -> str:
    return f"(id >> {bits})"


def pg_keys_functions() -> list[str]:
    """The keys' SQL functions (each IMMUTABLE; the short cases inlined by the planner):

    - `tracer_search_keys(id, vector)`: a row's keys, its words each prefixed by its
      coarse bucket (`'8_fetch' '8_charges'`), cut at KEY_CHARS characters. Made by
      rewriting the stripped vector's text (~4 µs a row at ingest), or, when its words
      are longer than a key together, one by one (`..._cut`, ~7 µs).
    - `tracer_search_keys_query(bucket, query)`: a query of words, phrases and prefixes
      (`'a' <-> 'b':* & 'c'`) as the keys in that bucket of the rows matching it
      (`'8_a' & '8_b':* & '8_c'`): by replace() (~1 µs), or, for a query longer than a
      key, word by word (`..._query_cut`).
    - `tracer_search_keys_exact(query)`: whether the keys are the query's answer (words
      and prefixes shorter than a key, no phrase); else a match is rechecked on the
      vector (a phrase's order, a long word's end).

    The words are the 'simple' parser's, of text whose punctuation was made spaces
    (pg_words; find's letters-and-digits tokens): none holds a space, a quote or an
    operator's `<`, and in a vector's or a query's text each is quoted, opening after a
    space, `(`, `!` or the start.

    The keys are PARALLEL RESTRICTED (they are safe), so a scan that reads them runs
    in the leader alone: the planner cannot estimate a query of buckets known only at
    run time (the walk's bucket, every bucket), guessed ~50,000 rows where a few
    hundred are read, and planned two workers whose start cost ~10 ms of a 1-ms read.
    Both functions are marked: the query names the one (the planner, finding nothing
    restricted in a query, would not look again once it is inlined) and its inlined
    body keeps the other. Changing what these functions give needs the keys' indexes
    built again."""
    bucket = "(id >> 16)::text || '_'"
    words = "strip(vector)::text"  # 'a' 'b'
    keys = f"('''' || {bucket} || substr(replace({words}, ''' ''', ''' ''' || {bucket}), 2))"
    operators = "regexp_replace(query::text, '<(-|[0-9]+)>', '&', 'g')"  # a phrase: its words
    query = f"' ' || {operators}"
    for before in " (!":  # a word's opening quote, then the bucket
        query = f"replace({query}, '{before}''', '{before}''' || bucket || '_')"
    # A query's text split at its quotes: its words are the even parts.
    parts = "unnest(string_to_array(query::text, '''')) WITH ORDINALITY AS part(text, n)"
    return [
        f"CREATE OR REPLACE FUNCTION {KEYS}_cut(id bigint, vector tsvector) RETURNS tsvector "
        "LANGUAGE sql IMMUTABLE PARALLEL RESTRICTED AS $$ SELECT array_to_tsvector(ARRAY("
        f"SELECT {bucket} || left(word, {KEY_CHARS}) "
        "FROM unnest(tsvector_to_array(vector)) AS word)) $$",
        f"CREATE OR REPLACE FUNCTION {KEYS}(id bigint, vector tsvector) RETURNS tsvector "
        "LANGUAGE sql IMMUTABLE PARALLEL RESTRICTED AS $$ SELECT CASE WHEN length(vector) = 0 "
        f"THEN vector WHEN octet_length({words}) > {KEY_CHARS} THEN {KEYS}_cut(id, vector) "
        f"ELSE {keys}::tsvector END $$",
        f"CREATE OR REPLACE FUNCTION {KEYS_QUERY}_cut(bucket bigint, query tsquery) "
        "RETURNS tsquery LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT string_agg("
        "CASE WHEN mod(n, 2) = 0 THEN bucket || '_' || left(text, "
        f"{KEY_CHARS}) ELSE regexp_replace(text, '<(-|[0-9]+)>', '&', 'g') END, '''' "
        f"ORDER BY n)::tsquery FROM {parts} $$",
        f"CREATE OR REPLACE FUNCTION {KEYS_QUERY}(bucket bigint, query tsquery) "
        "RETURNS tsquery LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT CASE WHEN "
        f"length(query::text) > {KEY_CHARS} THEN {KEYS_QUERY}_cut(bucket, query) "
        f"ELSE ({query})::tsquery END $$",
        f"CREATE OR REPLACE FUNCTION {KEYS_EXACT}(query tsquery) RETURNS boolean "
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT "
        f"length(query::text) <= {KEY_CHARS} AND strpos(query::text, '<') = 0 "
        "AND strpos(query::text, '!') = 0 $$",
    ]


def pg_keys(searched: SearchedTable) -> str:
    """A row's indexed keys, as a query must name them for the index to serve it."""
    return f"{KEYS}(id, {searched.pg_column})"


def pg_in_bucket(searched: SearchedTable, bucket: str, query: str) -> str:
    """SQL: the row is in coarse bucket `bucket` (SQL of a bigint) and holds there the
    keys of `query` (SQL of a tsquery); the index serves it. A match is to be
    rechecked on the vector (`search_doc @@ query`)."""
    return f"{pg_keys(searched)} @@ {KEYS_QUERY}({bucket}, {query})"


def pg_rechecked(searched: SearchedTable, query: str) -> str:
    """SQL: a row whose keys hold `query` (SQL of a tsquery) matches it: always, when
    the keys answer it (words alone, none cut: the planner folds the test of a query
    it knows), else as its vector says (a phrase's order, a long word's end)."""
    return f"({KEYS_EXACT}({query}) OR {searched.pg_column} @@ {query})"


def pg_in_buckets(searched: SearchedTable, buckets: int, query: str) -> str:
    """pg_in_bucket in any of `buckets` buckets, each a `%s` (a bigint) followed by the
    query's own: one bitmap index scan reading each bucket's keys in turn. The buckets
    given, the planner works the keys out and estimates each from the index's
    statistics (of a set known only at run time it guesses ~50,000 rows)."""
    each = ", ".join([f"{KEYS_QUERY}(%s::bigint, {query})"] * buckets)
    return f"{pg_keys(searched)} @@ ANY(ARRAY[{each}])"


def pg_anywhere(searched: SearchedTable, query: str) -> str:
    """The words' keys in every bucket of the table, its lowest id's to its highest
    (a set known at run time: see pg_in_buckets)."""
    low, high = (f"(SELECT {end}(id) FROM {searched.table})" for end in ("min", "max"))
    buckets = f"generate_series({low} >> {COARSE_BITS}, {high} >> {COARSE_BITS})"
    return (
        f"{pg_keys(searched)} @@ ANY(ARRAY(SELECT {KEYS_QUERY}(bucket, {query}) "
        f"FROM {buckets} AS bucket))"
    )


def pg_column_index(searched: SearchedTable) -> list[str]:
    columns = f"{pg_bucket(FINE_BITS)}, {pg_keys(searched)}"
    return [
        "CREATE EXTENSION IF NOT EXISTS btree_gin",
        *pg_keys_functions(),
        f"CREATE INDEX IF NOT EXISTS {searched.gin} ON {searched.table} USING gin ({columns})",
    ]


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


def create_statements(vendor: str) -> list[str]:
    make = {"sqlite": sqlite_create, "postgresql": pg_create}[vendor]
    return [statement for searched in TABLES for statement in make(searched)]


def drop_statements(vendor: str) -> list[str]:
    drop = {"sqlite": sqlite_drop, "postgresql": pg_drop}[vendor]
    statements = [statement for searched in TABLES for statement in drop(searched)]
    return statements + (pg_keys_drop() if vendor == "postgresql" else [])


def pg_keys_drop() -> list[str]:
    """The keys' functions dropped (after the indexes that use them)."""
    signatures = (f"{KEYS}(bigint, tsvector)", f"{KEYS}_cut(bigint, tsvector)",
                  f"{KEYS_QUERY}(bigint, tsquery)", f"{KEYS_QUERY}_cut(bigint, tsquery)",
                  f"{KEYS_EXACT}(tsquery)")  # fmt: skip
    return [f"DROP FUNCTION IF EXISTS {signature}" for signature in signatures]


def pg_swap_indexes(schema_editor, made, dropped, analyze: bool = False, then=()) -> None:
    """A migration's change of the runs' and steps' search indexes on PostgreSQL
    (elsewhere nothing): for each table the statements `made(searched)` (the new index
    built first, so the search keeps one meanwhile), then the indexes `dropped(searched)`
    names dropped, and ANALYZE when `analyze` (the planner's statistics of a new
    expression); last the statements `then`."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for searched in (RUNS, STEPS):
            for statement in made(searched):
                cursor.execute(statement)
            for name in dropped(searched):
                cursor.execute(f"DROP INDEX IF EXISTS {name}")
            if analyze:
                cursor.execute(f"ANALYZE {searched.table}")
        for statement in then:
            cursor.execute(statement)


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
