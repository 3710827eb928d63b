"""The zoomed timeline's indexes (0025) made smaller (issue 12, RESULTS §15e): drops and
creates only, cheap at 10 M steps.

- step_run_status_started (run, status, started_at) held every step for the minimap's
  failed ticks alone: step_run_failed_started, the same columns and `synthetic` WHERE
  status = 'failed', holds the failed ones (at 1 M steps on PostgreSQL 48 MB -> 0.8 MB).
- step_run_started loses finished_at (run, started_at, id, finished_at): the window's
  steps are read from the table for the page anyway (SQLite 73 -> ~41 MB at 1 M steps,
  PostgreSQL 51 -> 39 MB).

Neither cost measurable CPU at ingest (new rows go to the right edge of run-led
indexes), so this is a saving of size, pages and WAL, not of time per row.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('traces', '0030_pgsearch'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='step',
            name='step_run_started',
        ),
        migrations.RemoveIndex(
            model_name='step',
            name='step_run_status_started',
        ),
        migrations.AddIndex(
            model_name='step',
            index=models.Index(fields=['run', 'started_at', 'id'], name='step_run_started'),
        ),
        migrations.AddIndex(
            model_name='step',
            index=models.Index(condition=models.Q(('status', 'failed')), fields=['run', 'status', 'started_at', 'synthetic'], name='step_run_failed_started'),
        ),
    ]
