"""PostgreSQL: the entity-id prefix search's indexes in code point order.

The search finds entities whose id starts with a query by an index range; under a
linguistic database collation the column's own index does not bracket "starts
with", so the search compares `entity_id COLLATE "C"` and these serve it. SQLite
compares bytes already (its own index serves it)."""

from django.db import migrations

INDEXES = {
    "entitycounter_id_c": '(entity_id COLLATE "C")',
    "entitycounter_type_id_c": '(entity_type, entity_id COLLATE "C")',
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, columns in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON traces_entitycounter {columns}")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0021_critical_path"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes),
    ]
