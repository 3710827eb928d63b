"""PostgreSQL: the log lines' GIN index also holds each line's id bucket and its
level, `gin ((id >> 16), (id >> 10), level, <the message's vector>)` (btree_gin), so
the log search reads a common word's newest lines a bucket at a time, the level
filter inside the index (search/newest.py, search/logs.py), as 0030 did for runs and
steps. The new index is built before the old one is dropped, so the search keeps an
index meanwhile; not atomic, so a 10 M-step build is not one transaction with the
drop. SQLite: nothing changes."""

from django.db import migrations

from traces.search import index

OLD_NAME = "log_search"


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            index.pg_bucket_index_swap(cursor, index.LOGS_0041, OLD_NAME)


def backward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            index.pg_bucket_index_unswap(cursor, index.LOGS_0041, OLD_NAME)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("traces", "0033_edges2"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
