"""Run.step_id_min / step_id_max: the range of a run's step ids, noted at ingest, so
find in run bounds its full-text lookups by them (queries/find.py) instead of reading
the ids of the run's 100,000 steps for them on every find (10-35 ms at 1 M steps on
SQLite; PostgreSQL guessed them from the run's first and last steps, then counted
again through every step of the run when a word had fewer matches than the cap).

The stored runs get theirs here, from their steps (one aggregate of the steps by run;
the columns are added NULL, no table rewrite)."""

from django.db import migrations, models

BACKFILL = {
    "postgresql": (
        "UPDATE traces_run AS r SET step_id_min = s.low, step_id_max = s.high "
        "FROM (SELECT run_id, min(id) AS low, max(id) AS high FROM traces_step "
        "GROUP BY run_id) AS s WHERE s.run_id = r.id"
    ),
    # Each run's ids from an index on (run_id, ...): no UPDATE ... FROM before SQLite 3.33.
    "sqlite": (
        "UPDATE traces_run SET "
        "step_id_min = (SELECT min(id) FROM traces_step WHERE run_id = traces_run.id), "
        "step_id_max = (SELECT max(id) FROM traces_step WHERE run_id = traces_run.id)"
    ),
}


def backfill(apps, schema_editor):
    schema_editor.execute(BACKFILL[schema_editor.connection.vendor])


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0034_pglogs"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="step_id_max",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="run",
            name="step_id_min",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
