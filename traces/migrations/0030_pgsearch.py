"""PostgreSQL: the stored search vectors' GIN indexes (runs, steps) also hold each
row's id bucket, so a common word's newest matches are read a bucket at a time
(search/newest.py). The new index is built before the old one is dropped, so the
search keeps an index meanwhile; not atomic, so a 10 M-step build is not one
transaction with the drop. SQLite: nothing changes."""

from django.db import migrations

from traces.search import index

OLD_NAMES = {"traces_run": "run_search_doc", "traces_step": "step_search_doc"}
# 0030's own index, made again by 0036 on its way back (a later one is searched.gin).
NEW_NAMES = {"traces_run": "run_search_bucket", "traces_step": "step_search_bucket"}


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for searched in (index.RUNS, index.STEPS):
            index.pg_bucket_index_swap(cursor, searched, OLD_NAMES[searched.table])


def backward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for searched in (index.RUNS, index.STEPS):
            index.pg_bucket_index_unswap(cursor, searched, OLD_NAMES[searched.table])
            cursor.execute(f"DROP INDEX IF EXISTS {NEW_NAMES[searched.table]}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("traces", "0029_pg_search"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
