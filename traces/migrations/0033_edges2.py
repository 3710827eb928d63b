"""Step.failed_at_estimated: a failed step of a run whose times are estimated
(greentic: the file's time), its failure dated by that estimate, kept in the failed
steps' index (step_failed_at) so the failing-now strip counts those failures apart
from the timed ones, and the failed-steps list's `times=` filter keeps them, from the
index alone (reading each step's run cost the strip 5 ms at 1 M steps, 14 ms at its
cap of 10,000 failures, on PostgreSQL).

Cheap at 10 M steps: the column is added NULL (no table rewrite on either database),
only the failed steps are filled (through the status index), and the partial index
of the failed steps is built again after the fill."""

from django.db import migrations, models

import traces.models
from traces.ingest import failure_counts


def backfill(apps, schema_editor):
    failure_counts.fill_failed_at_estimated()


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0032_fix15"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="step",
            name="step_failed_at",
        ),
        migrations.AddField(
            model_name="step",
            name="failed_at_estimated",
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="step",
            index=traces.models.KeysetIndex(
                condition=models.Q(("status", "failed")),
                fields=["status", "-failed_at", "-id", "synthetic", "failed_at_estimated"],
                name="step_failed_at",
            ),
        ),
    ]
