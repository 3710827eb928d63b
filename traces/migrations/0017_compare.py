"""Step.path, the names along the tree down to each step (ingest/step_paths.py),
and the (run, path, ...) index a comparison of two runs reads them in order from:
filled here for the steps already stored, kept by the store at ingest."""

from django.db import migrations, models

import traces.models
from traces.ingest.step_paths import StepPaths

BATCH = 2000


def fill_paths(apps, schema_editor):
    connection = schema_editor.connection
    table = apps.get_model("traces", "Step")._meta.db_table
    with connection.cursor() as reader:
        reader.execute(f"SELECT id FROM {apps.get_model('traces', 'Run')._meta.db_table}")
        run_ids = [row[0] for row in reader.fetchall()]
    for run_id in run_ids:
        with connection.cursor() as cursor:
            # Parents before children: the order the store wrote them in.
            cursor.execute(
                f"SELECT id, parent_id, name, type, loop_index FROM {table} "
                "WHERE run_id = %s ORDER BY seq, id",
                [run_id],
            )
            paths = StepPaths()
            rows = [
                (pk, paths.add(pk, parent, name or kind, loop))
                for pk, parent, name, kind, loop in cursor.fetchall()
            ]
            for start in range(0, len(rows), BATCH):
                _write_paths(cursor, table, rows[start : start + BATCH])


def _write_paths(cursor, table: str, rows: list[tuple[int, str]]) -> None:
    """One UPDATE for a batch of (id, path): a statement a row took ~0.8 ms on a
    5.6 M-step PostgreSQL store (70 minutes; bench/RESULTS.md §13i)."""
    values = ", ".join(["(%s, %s)"] * len(rows))
    params = [value for row in rows for value in row]
    cursor.execute(
        f"WITH new(id, path) AS (VALUES {values}) "
        f"UPDATE {table} SET path = new.path FROM new WHERE {table}.id = new.id",
        params,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0016_items_failed_subtree"),
    ]

    operations = [
        migrations.AddField(
            model_name="step",
            name="path",
            field=traces.models.PathField(blank=True, default=""),
        ),
        migrations.RunPython(fill_paths, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="step",
            index=models.Index(
                fields=["run", "path", "status", "duration_ms", "synthetic"], name="step_run_path"
            ),
        ),
    ]
