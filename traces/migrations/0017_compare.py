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
    update = f"UPDATE {table} SET path = %s WHERE id = %s"
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
                (paths.add(pk, parent, name or kind, loop), pk)
                for pk, parent, name, kind, loop in cursor.fetchall()
            ]
            for start in range(0, len(rows), BATCH):
                cursor.executemany(update, rows[start : start + BATCH])


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
