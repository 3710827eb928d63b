from django.db import migrations, models

# A step whose items failed counts as failed for "failed only" from now on (the
# store marks it and its ancestors): mark the steps already stored likewise.
MARK = """
WITH RECURSIVE marked(id) AS (
    SELECT id FROM traces_step WHERE items_failed > 0
    UNION
    SELECT step.parent_id FROM traces_step AS step JOIN marked ON step.id = marked.id
    WHERE step.parent_id IS NOT NULL
)
UPDATE traces_step SET failed_subtree = TRUE
WHERE id IN (SELECT id FROM marked) AND NOT failed_subtree
"""

# The runs' new summary: items failed inside their steps (the store sums it from now on).
SUM = """
UPDATE traces_run SET steps_items_failed = (
    SELECT COALESCE(SUM(step.items_failed), 0) FROM traces_step AS step
    WHERE step.run_id = traces_run.id AND step.items_failed > 0 AND NOT step.synthetic
)
WHERE id IN (SELECT run_id FROM traces_step WHERE items_failed > 0)
"""


class Migration(migrations.Migration):

    dependencies = [
        ("traces", "0015_search"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="steps_items_failed",
            field=models.IntegerField(default=0),
        ),
        migrations.RunSQL(MARK, migrations.RunSQL.noop),
        migrations.RunSQL(SUM, migrations.RunSQL.noop),
    ]
