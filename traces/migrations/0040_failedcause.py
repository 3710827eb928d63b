"""The failed steps' index (step_failed_at) ends with their cause, so the failed-steps
page with a `times=` filter groups its causes box from the index alone (the read model
does not split by estimate): 33 → 18 ms of SQL for a day's 17,000 failures at 10 M steps
on PostgreSQL (RESULTS §17a). A partial index of the failed steps: 5 s at 10 M."""

import traces.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0039_pgcopy"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="step",
            name="step_failed_at",
        ),
        migrations.AddIndex(
            model_name="step",
            index=traces.models.KeysetIndex(
                condition=models.Q(("status", "failed")),
                fields=[
                    "status",
                    "-failed_at",
                    "-id",
                    "synthetic",
                    "failed_at_estimated",
                    "error_cause",
                ],
                name="step_failed_at",
            ),
        ),
    ]
