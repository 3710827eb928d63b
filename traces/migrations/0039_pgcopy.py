"""The steps' subject index (step_entity_seen) holds only the steps that have a
subject entity (both databases; built again: a scan of the steps). PostgreSQL: the
long values of the tables an ingest writes compressed by lz4 (pglz before), and their
JSON columns left out of ANALYZE (statistics target 0): catalog changes, no row
rewritten (ingest/pg_storage.py, RESULTS §17d)."""

from django.db import migrations, models

import traces.models
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
        ("traces", "0038_logstep"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="step", name="step_entity_seen"),
        migrations.AddIndex(
            model_name="step",
            index=traces.models.KeysetIndex(
                condition=models.Q(entity_type__gt=""),
                fields=["entity_type", "entity_id", "-entity_seen_at", "-id"],
                name="step_entity_seen",
            ),
        ),
        migrations.RunPython(forward, backward),
    ]
