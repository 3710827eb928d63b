"""PostgreSQL: the runs' and steps' GIN indexes are of each word of the stored vector
prefixed by the row's coarse id bucket (`8_fetch`, "bucketed words") and of the row's
fine bucket, in place of (coarse bucket, fine bucket, vector): a bucket without a
common word was an intersection of the bucket's postings with the word's (1-25 ms a
bucket at 1 M steps, as their rows interleave in the heap), now the look-up of an
absent entry (search/index.py, RESULTS §16a). The new index is built before the old
one is dropped, so the search keeps an index meanwhile; not atomic, so a 10 M-step
build is not one transaction with the drop. Every search index's pending list is kept
to 256 kB (index.PENDING: each scan reads it whole; the log lines' index is altered
in place). SQLite: nothing changes."""

from django.db import migrations

from traces.search import index

# The indexes as 0030_pgsearch made them, for the way back.
OLD = {"traces_run": "run_search_bucket", "traces_step": "step_search_bucket"}


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for searched in (index.RUNS, index.STEPS):
                index.pg_bucket_index_swap(cursor, searched, OLD[searched.table])
            cursor.execute(f"ALTER INDEX IF EXISTS {index.LOGS.gin} SET ({index.PENDING})")


def backward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for searched in (index.RUNS, index.STEPS):
                name, table = OLD[searched.table], searched.table
                cursor.execute(
                    f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
                    f"USING gin ((id >> 16), (id >> 10), {searched.pg_column})"
                )
                cursor.execute(f"DROP INDEX IF EXISTS {searched.gin}")
            for statement in index.pg_bucketed_drop():
                cursor.execute(statement)
            setting = index.PENDING.split(" = ")[0]
            cursor.execute(f"ALTER INDEX IF EXISTS {index.LOGS.gin} RESET ({setting})")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("traces", "0035_findpages"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
