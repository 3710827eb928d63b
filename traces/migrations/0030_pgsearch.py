"""PostgreSQL: the stored search vectors' GIN indexes (runs, steps) also hold each
row's id bucket, so a common word's newest matches are read a bucket at a time
(search/newest.py). The new index is built before the old one is dropped, so the
search keeps an index meanwhile; not atomic, so a 10 M-step build is not one
transaction with the drop. SQLite: nothing changes."""

from django.db import migrations

from traces.search import index

OLD_NAMES = {"traces_run": "run_search_doc", "traces_step": "step_search_doc"}
NEW_NAMES = {"traces_run": "run_search_bucket", "traces_step": "step_search_bucket"}


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for searched in (index.RUNS, index.STEPS):
            for statement in index.pg_column_index(searched):
                cursor.execute(statement)
            cursor.execute(f"DROP INDEX IF EXISTS {OLD_NAMES[searched.table]}")
            # The planner's statistics of the bucket expressions.
            cursor.execute(f"ANALYZE {searched.table}")


def backward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for searched in (index.RUNS, index.STEPS):
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {OLD_NAMES[searched.table]} ON {searched.table} "
                f"USING gin ({searched.pg_column})"
            )
            # 0030's index (0033 made it again on its way back), or a later one.
            for name in {NEW_NAMES[searched.table], searched.gin}:
                cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("traces", "0029_pg_search"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
