"""PostgreSQL: the stored search vectors' GIN indexes (runs, steps) also hold each
row's id bucket, so a common word's newest matches are read a bucket at a time
(search/newest.py). The new index is built before the old one is dropped, so the
search keeps an index meanwhile; not atomic, so a 10 M-step build is not one
transaction with the drop. SQLite: nothing changes."""

from django.db import migrations

from traces.search import index

OLD_NAMES = {"traces_run": "run_search_doc", "traces_step": "step_search_doc"}
NEW_NAMES = {"traces_run": "run_search_bucket", "traces_step": "step_search_bucket"}


def forward(apps, schema_editor):
    # The index as search/index.py makes it now (0033 rebuilds 0030's the same way).
    index.pg_swap_indexes(
        schema_editor, index.pg_column_index, lambda searched: [OLD_NAMES[searched.table]],
        analyze=True,
    )  # fmt: skip


def backward(apps, schema_editor):
    def old(searched):
        name, table = OLD_NAMES[searched.table], searched.table
        return [f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ({searched.pg_column})"]

    # 0030's index (0033 made it again on its way back), or a later one.
    index.pg_swap_indexes(
        schema_editor, old, lambda searched: [NEW_NAMES[searched.table], searched.gin]
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("traces", "0029_pg_search"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
