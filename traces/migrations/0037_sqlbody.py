"""PostgreSQL: the bucketed words' functions made again with SQL-standard bodies
(search/index.py, pg_bucketed_functions): a body in a string names its helper by the
session's search_path when inlined, so pg_restore (an empty search_path) and
PostgreSQL 17's maintenance (ANALYZE, VACUUM, REINDEX with pg_catalog alone) could not
build or read the search indexes. Each function answers as before: the indexes stay.
SQLite: nothing changes."""

from django.db import migrations

from traces.search import index


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            for statement in index.pg_bucketed_functions():
                cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0036_pgsearch4"),
    ]

    operations = [
        migrations.RunPython(forward, migrations.RunPython.noop),
    ]
