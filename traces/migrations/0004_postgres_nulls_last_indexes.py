"""PostgreSQL puts NULLs first in a DESC index, but the pages sort newest first
with NULLs last (a run that never started goes to the end). Give PostgreSQL
indexes in the order the queries read; SQLite's DESC already sorts NULLs last,
so the model's indexes serve it as they are."""

from django.db import migrations

INDEXES = {
    "run_started_nl": "traces_run (started_at DESC NULLS LAST, id DESC)",
    "run_status_started_nl": "traces_run (status, started_at DESC NULLS LAST, id DESC)",
    "run_format_started_nl": "traces_run (format, started_at DESC NULLS LAST, id DESC)",
    "run_type_started_nl": "traces_run (type, started_at DESC NULLS LAST, id DESC)",
    "step_status_started_nl": "traces_step (status, started_at DESC NULLS LAST, id DESC)",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("traces", "0003_ingestjob")]
    operations = [migrations.RunPython(create, drop)]
