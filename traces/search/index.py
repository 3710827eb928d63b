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
columns, which PostgreSQL keeps itself.

Long values are indexed up to INDEXED_CHARS: an id or an error's words sit at its
start, and a 100 MB message must not be tokenised whole at ingest."""

from __future__ import annotations

import json
from dataclasses import dataclass

INDEXED_CHARS = 4096


@dataclass(frozen=True)
class SearchedTable:
    table: str  # the model's table
    columns: tuple[str, ...]  # what is searched, in its own words
    fts: str  # the SQLite FTS5 table
    gin: str  # the PostgreSQL index
    indexed_by_store: bool  # SQLite: new rows indexed by index_new_rows, not a trigger

    def sqlite_values(self, row: str) -> str:
        return ", ".join(f"substr({row}.{column}, 1, {INDEXED_CHARS})" for column in self.columns)

    def pg_document(self) -> str:
        """The indexed expression; a query must repeat it exactly for the index to serve it.
        Punctuation is made a space first, so words split as SQLite's FTS5 splits them
        (PostgreSQL's parser keeps `step.completed` or `a@b.io` whole)."""
        parts = " || ' ' || ".join(
            f"left(coalesce({column}::text, ''), {INDEXED_CHARS})" for column in self.columns
        )
        return f"to_tsvector('simple'::regconfig, {pg_words(parts)})"


def pg_words(text_sql: str) -> str:
    """SQL of `text_sql` with every run of punctuation made one space."""
    return f"regexp_replace({text_sql}, '[^[:alnum:]]+', ' ', 'g')"


def pg_match(searched: SearchedTable, words: list[str]) -> str:
    """SQL matching rows holding every word (one `%s` a word), each a tsquery phrase
    split as the documents are; the index serves it."""
    phrase = f"phraseto_tsquery('simple'::regconfig, {pg_words('%s')})"
    return " AND ".join(f"{searched.pg_document()} @@ {phrase}" for _ in words)


def fts_query(words: list[str]) -> str:
    """An FTS5 query of every word, each a phrase tokenised as the index was (quotes
    doubled: no word is read as FTS5 syntax)."""
    return " AND ".join('"' + word.replace('"', '""') + '"' for word in words)


RUNS = SearchedTable(
    "traces_run",
    ("external_id", "name", "type", "trigger", "actor", "error", "attributes"),
    "traces_run_search",
    "run_search",
    indexed_by_store=False,
)
STEPS = SearchedTable(
    "traces_step",
    ("key", "name", "type", "error"),
    "traces_step_search",
    "step_search",
    indexed_by_store=True,
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
    for searched in TABLES:
        if searched.indexed_by_store:
            names = ", ".join(searched.columns)
            cursor.execute(
                f"INSERT INTO {searched.fts}(rowid, {names}) "
                f"SELECT id, {searched.sqlite_values(searched.table)} FROM {searched.table} "
                "WHERE run_id IN (SELECT value FROM json_each(%s))",
                [json.dumps(run_ids)],
            )


def sqlite_triggers(searched: SearchedTable) -> list[str]:
    """The triggers that keep a table's FTS index (IF NOT EXISTS: see ensure_triggers)."""
    names = ", ".join(searched.columns)
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
    names = ", ".join(searched.columns)
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
    return [f"CREATE INDEX {searched.gin} ON {searched.table} USING gin ({searched.pg_document()})"]


def pg_drop(searched: SearchedTable) -> list[str]:
    return [f"DROP INDEX IF EXISTS {searched.gin}"]


def create_statements(vendor: str) -> list[str]:
    make = {"sqlite": sqlite_create, "postgresql": pg_create}[vendor]
    return [statement for searched in TABLES for statement in make(searched)]


def drop_statements(vendor: str) -> list[str]:
    drop = {"sqlite": sqlite_drop, "postgresql": pg_drop}[vendor]
    return [statement for searched in TABLES for statement in drop(searched)]
