"""SQLite: the log lines' FTS5 table holds each line's level in a column beside its
message, so the log search matches a level inside FTS5 (search/logs.py; a common
word at a level none of its lines has read its 200,000 matches, each joined to its
line). The words are matched in the message column alone. The table is built again
(every message tokenised: ~3 s at 1 M steps, RESULTS §17e), in batches of FILL_BATCH
ids, each its own transaction (not atomic); PostgreSQL's GIN index holds the level
already (0034). Both: the steps' index `step_name (name, id)`, from which the log
search reads a step name's steps (PostgreSQL: hashed, ~10,000 for a common name, not
found by reading all of step_run_name; SQLite: whether any step has the name)."""

from django.db import migrations, models

from traces.search import index

FILL_BATCH = 50_000

# The log lines' index as migration 0015 made it.
OLD_LOGS = index.SearchedTable(
    "traces_logentry", ("message",), "traces_log_search", "log_search", indexed_by_store=True
)


def _rebuild(connection, searched: index.SearchedTable) -> None:
    with connection.cursor() as cursor:
        for statement in index.sqlite_drop(searched):
            cursor.execute(statement)
        *create, fill = index.sqlite_create(searched)
        for statement in create:
            cursor.execute(statement)
        cursor.execute(f"SELECT min(id), max(id) FROM {searched.table}")
        first, last = cursor.fetchone()
        if last is None:
            return
        for start in range(first, last + 1, FILL_BATCH):
            cursor.execute(f"{fill} WHERE id BETWEEN {start} AND {start + FILL_BATCH - 1}")


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        _rebuild(schema_editor.connection, index.LOGS_0041)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        _rebuild(schema_editor.connection, OLD_LOGS)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("traces", "0040_failedcause"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
        migrations.AddIndex(
            model_name="step",
            index=models.Index(fields=["name", "id"], name="step_name"),
        ),
    ]
