"""Step.failed_at: a failed step's time (its start, else its run's), as the failure
causes read models date it, so the failed-steps list ranges and orders its rows by
the time the causes box counts them by (a greentic step has no start of its own: the
box counted it in "last 24 h", the list did not list it).

Cheap at 10 M steps: the column is added NULL (no table rewrite on either database),
only the failed steps are filled (through the status index), before the indexes that
read it are built; the cause index is rebuilt on the failed steps alone (partial).

TraceFile.sha256 indexed: an upload whose content an ingested file already has is
found by it (loader._known_content), a file table of tens of thousands of rows."""

from django.db import migrations, models

import traces.models
from traces.ingest import failure_counts


def backfill(apps, schema_editor):
    failure_counts.fill_failed_at()


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0031_ingest12"),
    ]

    operations = [
        migrations.AddField(
            model_name="step",
            name="failed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.RemoveIndex(
            model_name="step",
            name="step_cause_started",
        ),
        migrations.AddIndex(
            model_name="step",
            index=traces.models.KeysetIndex(
                condition=models.Q(("status", "failed")),
                fields=["status", "-failed_at", "-id", "synthetic"],
                name="step_failed_at",
            ),
        ),
        migrations.AddIndex(
            model_name="step",
            index=traces.models.KeysetIndex(
                condition=models.Q(("error_cause", ""), _negated=True),
                fields=["error_cause", "-failed_at", "-id"],
                name="step_cause_failed_at",
            ),
        ),
        migrations.AddIndex(
            model_name="tracefile",
            index=models.Index(fields=["sha256"], name="tracefile_sha256"),
        ),
    ]
