"""PostgreSQL: the runs' and steps' GIN indexes are of each word of the stored vector
prefixed by the row's coarse id bucket (`8_fetch`) and of the row's fine bucket, in
place of (coarse bucket, fine bucket, vector): a bucket without a common word was a
walk of the bucket's and the word's postings (up to 10-25 ms a bucket at 1 M steps,
wherever their rows interleave in the heap), now the look-up of an absent key
(search/index.py, RESULTS §16a). The new index is built before the old one is dropped,
so the search keeps an index meanwhile; not atomic, so a 10 M-step build is not one
transaction with the drop. SQLite: nothing changes."""

from django.db import migrations

from traces.search import index

# The indexes as 0030_pgsearch made them, for the way back.
OLD = {"traces_run": "run_search_bucket", "traces_step": "step_search_bucket"}


def forward(apps, schema_editor):
    index.pg_swap_indexes(
        schema_editor, index.pg_column_index, lambda searched: [OLD[searched.table]],
        analyze=True,
    )  # fmt: skip


def backward(apps, schema_editor):
    def old(searched):
        name, table = OLD[searched.table], searched.table
        return [
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
            f"USING gin ((id >> 16), (id >> 10), {searched.pg_column})"
        ]

    index.pg_swap_indexes(
        schema_editor, old, lambda searched: [searched.gin], then=index.pg_keys_drop()
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("traces", "0032_fix15"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
