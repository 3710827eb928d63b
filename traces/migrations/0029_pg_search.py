"""The steps' search: their attribute and input values searched too, and on
PostgreSQL, for runs and steps, a stored tsvector column (kept by a trigger) behind
the GIN index instead of an expression index (search/index.py says why).

Existing rows are indexed in batches of FILL_BATCH ids, each its own transaction
(the migration is not atomic), so a 10 M-step table is never locked nor held in
one transaction; a run stopped part-way goes on from the rows without a vector.
The old definition is kept here for the way back."""

from django.db import migrations

from traces.search import index

FILL_BATCH = 50_000

# The steps' index as migration 0015 made it.
OLD_STEPS = index.SearchedTable(
    "traces_step",
    ("key", "name", "type", "error"),
    "traces_step_search",
    "step_search",
    indexed_by_store=True,
)
# The runs' PostgreSQL index as 0015 made it (SQLite's is unchanged).
OLD_RUNS = index.SearchedTable(
    "traces_run",
    ("external_id", "name", "type", "trigger", "actor", "error", "attributes"),
    "traces_run_search",
    "run_search",
    indexed_by_store=False,
)


def _id_bounds(cursor, table: str) -> tuple[int, int]:
    cursor.execute(f"SELECT min(id), max(id) FROM {table}")
    first, last = cursor.fetchone()
    return (first or 0), (last or 0)


def _batches(cursor, table: str = "traces_step"):
    first, last = _id_bounds(cursor, table)
    if not last:
        return
    for start in range(first, last + 1, FILL_BATCH):
        yield start, start + FILL_BATCH - 1


def forward(apps, schema_editor):
    connection = schema_editor.connection
    steps = index.STEPS
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for searched, old in ((index.RUNS, OLD_RUNS), (steps, OLD_STEPS)):
                # The expression index first: the fill would otherwise keep it up to date.
                cursor.execute(f"DROP INDEX IF EXISTS {old.gin}")
                for statement in index.pg_column_create(searched):
                    cursor.execute(statement)
                for first, last in _batches(cursor, searched.table):
                    cursor.execute(index.pg_column_fill(searched, first, last))
                for statement in index.pg_bucket_index(searched):
                    cursor.execute(statement)
                # The planner's word statistics for the new column (its common words).
                cursor.execute(f"ANALYZE {searched.table}")
            return
        for statement in index.sqlite_drop(steps):
            cursor.execute(statement)
        *create, fill = index.sqlite_create(steps)
        for statement in create:
            cursor.execute(statement)
        for first, last in _batches(cursor):
            cursor.execute(f"{fill} WHERE id BETWEEN {first} AND {last}")


def backward(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for searched, old in ((index.RUNS, OLD_RUNS), (index.STEPS, OLD_STEPS)):
                for statement in [*index.pg_drop(searched), *index.pg_create(old)]:
                    cursor.execute(statement)
            return
        for statement in [*index.sqlite_drop(index.STEPS), *index.sqlite_create(OLD_STEPS)]:
            cursor.execute(statement)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("traces", "0028_failing_items"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
