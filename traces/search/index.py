"""The full-text indexes behind the search, kept by the database itself.

SQLite: an FTS5 table per searched model (contentless: it holds only the index),
kept by triggers on the model's table, so every path that writes or deletes rows
(ingest, re-sync, delete, prune) keeps it without a line of Python and in the
same transaction. PostgreSQL: a GIN index on a `to_tsvector('simple', ...)`
expression of the same columns, which PostgreSQL keeps itself.

Long values are indexed up to INDEXED_CHARS: an id or an error's words sit at its
start, and a 100 MB message must not be tokenised whole at ingest."""

from __future__ import annotations

from dataclasses import dataclass

INDEXED_CHARS = 4096


@dataclass(frozen=True)
class SearchedTable:
    table: str  # the model's table
    columns: tuple[str, ...]  # what is searched, in its own words
    fts: str  # the SQLite FTS5 table
    gin: str  # the PostgreSQL index

    def sqlite_values(self, row: str) -> str:
        return ", ".join(f"substr({row}.{column}, 1, {INDEXED_CHARS})" for column in self.columns)

    def pg_document(self) -> str:
        """The indexed expression; a query must repeat it exactly for the index to serve it."""
        parts = " || ' ' || ".join(
            f"left(coalesce({column}::text, ''), {INDEXED_CHARS})" for column in self.columns
        )
        return f"to_tsvector('simple'::regconfig, {parts})"


RUNS = SearchedTable(
    "traces_run",
    ("external_id", "name", "type", "trigger", "actor", "error", "attributes"),
    "traces_run_search",
    "run_search",
)
STEPS = SearchedTable(
    "traces_step",
    ("key", "name", "type", "error", "attributes"),
    "traces_step_search",
    "step_search",
)
TABLES = (RUNS, STEPS)


def sqlite_create(searched: SearchedTable) -> list[str]:
    names = ", ".join(searched.columns)
    fts, table = searched.fts, searched.table
    insert = f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {searched.sqlite_values('new')});"
    delete = (
        f"INSERT INTO {fts}({fts}, rowid, {names}) "
        f"VALUES ('delete', old.id, {searched.sqlite_values('old')});"
    )
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5({names}, content='')",
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {names} ON {table} "
        f"BEGIN {delete} {insert} END",
        f"INSERT INTO {fts}(rowid, {names}) "
        f"SELECT id, {searched.sqlite_values(table)} FROM {table}",
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
