from django.db import migrations, models

from traces.search import index


def create_search_indexes(apps, schema_editor):
    # The log lines' index as it was until 0043 (their step_name column is later).
    tables = (index.RUNS, index.STEPS, index.LOGS_0041)
    for statement in index.create_statements(schema_editor.connection.vendor, tables):
        schema_editor.execute(statement)


def drop_search_indexes(apps, schema_editor):
    for statement in index.drop_statements(schema_editor.connection.vendor):
        schema_editor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ("traces", "0014_ingest_claims"),
    ]

    operations = [
        migrations.RunPython(create_search_indexes, drop_search_indexes),
        migrations.AddIndex(
            model_name="entitycounter",
            index=models.Index(fields=["entity_id"], name="entitycounter_id"),
        ),
        migrations.AddIndex(
            model_name="entitycounter",
            index=models.Index(fields=["external_id"], name="entitycounter_external_id"),
        ),
    ]
