"""PostgreSQL: the long values of the tables an ingest writes compressed by lz4 (pglz
before), and their JSON columns left out of ANALYZE (statistics target 0): both
catalog changes, no row rewritten (ingest/pg_storage.py, RESULTS §17d). SQLite:
nothing changes."""

from django.db import migrations

from traces.ingest import pg_storage


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            pg_storage.apply(cursor)


def backward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            pg_storage.apply(cursor, undo=True)


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0036_pgsearch4"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
