"""Each log line holds its step's name (LogEntry.step_name, '' without a step), a key
of the log lines' search index beside the level: the log search ANDs a step name
inside the index (PostgreSQL's GIN index, SQLite's FTS5 column), not by reading each
line of the word and joining its step (a common word and a common name at 10 M steps:
49,610 heap blocks, 240 ms; RESULTS §18e).

The column is added with a default ('': no rewrite of the table), filled from the
steps in batches of FILL_BATCH ids, each its own transaction (not atomic), with the
search index dropped meanwhile (an UPDATE would write each line's entries into it
again); then the index is built again with the new key (PostgreSQL: the GIN index,
then ANALYZE; SQLite: the FTS5 table, every message tokenised again, as 0041 did).
Measured at 1 M steps in RESULTS §18e."""

from django.db import migrations, transaction

import traces.models
from traces.ingest import pg_storage
from traces.search import index

FILL_BATCH = 50_000

# The log lines' index as migrations 0034 (PostgreSQL) and 0041 (SQLite) made it.
OLD_LOGS = index.LOGS_0041


def _id_ranges(cursor):
    cursor.execute(f"SELECT min(id), max(id) FROM {index.LOGS.table}")
    first, last = cursor.fetchone()
    if last is None:
        return
    for start in range(first, last + 1, FILL_BATCH):
        yield start, start + FILL_BATCH - 1


def _fill_names(cursor, vendor: str) -> None:
    table = index.LOGS.table
    for start, end in _id_ranges(cursor):
        if vendor == "postgresql":
            # Only the lines whose name differs: a run again after it stopped midway
            # does not write a new version of each line filled before (each a dead
            # row until vacuum), nor does any run a line of a step named ''.
            cursor.execute(
                f"UPDATE {table} AS line SET step_name = step.name FROM traces_step AS step "
                "WHERE step.id = line.step_id AND line.id BETWEEN %s AND %s "
                "AND line.step_name <> step.name",
                [start, end],
            )
        else:
            cursor.execute(
                f"UPDATE {table} SET step_name = (SELECT name FROM traces_step AS step "
                "WHERE step.id = step_id) WHERE id BETWEEN %s AND %s AND step_id IS NOT NULL",
                [start, end],
            )


def _build(cursor, vendor: str, searched: index.SearchedTable) -> None:
    if vendor == "postgresql":
        for statement in index.pg_bucket_index(searched):
            cursor.execute(statement)
        cursor.execute(f"ANALYZE {searched.table}")
        return
    *create, fill = index.sqlite_create(searched)
    for statement in create:
        cursor.execute(statement)
    for start, end in _id_ranges(cursor):
        cursor.execute(f"{fill} WHERE id BETWEEN {start} AND {end}")


def _drop(cursor, vendor: str, searched: index.SearchedTable) -> None:
    statements = index.pg_drop(searched) if vendor == "postgresql" else index.sqlite_drop(searched)
    for statement in statements:
        cursor.execute(statement)


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        # Not atomic: a migration stopped midway (its fill is long at 10 M) is run
        # again from the start, so the column may be there already.
        if not _has_step_name(cursor, schema_editor.connection):
            cursor.execute(
                f"ALTER TABLE {index.LOGS.table} "
                "ADD COLUMN step_name varchar(500) NOT NULL DEFAULT ''"
            )
        if vendor == "postgresql":
            # As Django adds a column with a default: the default only fills the rows
            # there (PostgreSQL 11+: no rewrite); the model gives every new row's.
            cursor.execute(f"ALTER TABLE {index.LOGS.table} ALTER COLUMN step_name DROP DEFAULT")
            with transaction.atomic(using=schema_editor.connection.alias):
                pg_storage.apply(cursor)  # lz4, as every text column of the table (0039)
        _drop(cursor, vendor, OLD_LOGS)
        _fill_names(cursor, vendor)
        _build(cursor, vendor, index.LOGS)


def _has_step_name(cursor, connection) -> bool:
    columns = connection.introspection.get_table_description(cursor, index.LOGS.table)
    return any(column.name == "step_name" for column in columns)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        _drop(cursor, vendor, index.LOGS)
        cursor.execute(f"ALTER TABLE {index.LOGS.table} DROP COLUMN step_name")
        _build(cursor, vendor, OLD_LOGS)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("traces", "0042_findmini"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="logentry",
                    name="step_name",
                    field=traces.models.StepNameField(blank=True, default="", max_length=500),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward)],
        ),
    ]
