"""log_bucket_time and log_fine_time: the log lines by (coarse id bucket, time, id)
and by (fine id bucket, time, id) (with the id, PostgreSQL reads the index alone), so
a log search with words in a time range finds the ids its lines lie between from a
few index probes (each coarse bucket's first or last time, then each fine bucket's
of its end coarse bucket, then the lines of its end fine bucket: ~130 probes at 10 M
steps) and searches only the id buckets between (search/logs.py): a wide range's
search walked every bucket newer than it, testing each line holding the word. Plain
b-tree indexes on both databases, built in one pass (~423,000 lines at 1 M steps)."""

from django.db import migrations, models
from django.db.models.expressions import CombinedExpression


def bucket(bits: int) -> CombinedExpression:
    return CombinedExpression(models.F("id"), ">>", models.Value(bits))


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0037_sqlbody"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="logentry",
            index=models.Index(
                bucket(16), models.F("time"), models.F("id"), name="log_bucket_time"
            ),
        ),
        migrations.AddIndex(
            model_name="logentry",
            index=models.Index(bucket(10), models.F("time"), models.F("id"), name="log_fine_time"),
        ),
    ]
