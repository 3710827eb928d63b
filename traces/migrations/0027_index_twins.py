"""Indexes that every row paid for twice (issue 12: ingest at the speed of a raw copy).

- Django's own index on a foreign key that another index leads with: Step.run
  (step_tree, step_run_seq, the unique key...), Step.parent (step_children), Call.step
  (call_step), Call.run (call_run: the same column), EntityLink.step / .run (link_step /
  link_run: the same columns), LogEntry.run / .step (log_run_seq / log_step_seq).
  Dropped by name; the fields get db_index=False. On SQLite an AlterField would copy
  the whole table for it, so the state and the database are changed apart.
- PostgreSQL's NULLS LAST twins (`*_nl`, 0004, 0009, 0013, 0020) of the model's DESC
  indexes on nullable columns that are only read newest first: the keyset lists read
  `DESC NULLS LAST` (traces.pagination), which PostgreSQL's plain DESC index (NULLs
  first) cannot serve, so the plain one served only the few reads that said plain
  `DESC` (now `DESC NULLS LAST`: the same rows first on both databases). The runs
  list's listed_at and duration_ms indexes keep both (its oldest-first sorts, ASC NULLS
  LAST, walk the plain one backwards). The model's index is now a
  KeysetIndex, written `DESC NULLS LAST` on PostgreSQL (SQLite's DESC already puts
  NULLs last): on PostgreSQL the plain index is dropped and its twin renamed to the
  model's name (no rebuild); SQLite's indexes are unchanged.
"""

from django.db import migrations, models

import traces.models

NOT_BLANK_CAUSE = ~models.Q(error_cause="")
LEFT_SOURCE = models.Q(left_source_at__isnull=False)

# (model, index name, fields, condition): the model's DESC indexes with a NULLS LAST twin
# on PostgreSQL named `<name>_nl`.
TWINS = [
    ("entitylink", "link_entity_seen", ["entity_type", "entity_id", "-seen_at", "-id"], None),
    ("run", "run_started", ["-started_at", "-id"], None),
    ("run", "run_status_started", ["status", "-started_at", "-id"], None),
    ("run", "run_format_started", ["format", "-started_at", "-id"], None),
    ("run", "run_type_started", ["type", "-started_at", "-id"], None),
    ("run", "run_left_source_started", ["-started_at", "-id"], LEFT_SOURCE),
    ("step", "step_status_started", ["status", "-started_at", "-id", "synthetic"], None),
    ("step", "step_entity_seen", ["entity_type", "entity_id", "-entity_seen_at", "-id"], None),
    ("step", "step_cause_started", ["error_cause", "-started_at", "-id"], NOT_BLANK_CAUSE),
]

# (model, foreign key) whose own index another index makes a twin of.
FOREIGN_KEYS = [
    ("step", "run"),
    ("step", "parent"),
    ("call", "step"),
    ("call", "run"),
    ("entitylink", "step"),
    ("entitylink", "run"),
    ("logentry", "run"),
    ("logentry", "step"),
]


def _index(cls, fields, name, condition):
    return cls(fields=fields, name=name, **({"condition": condition} if condition else {}))


def _state_operations():
    for model, name, fields, condition in TWINS:
        yield migrations.RemoveIndex(model_name=model, name=name)
        yield migrations.AddIndex(
            model_name=model, index=_index(traces.models.KeysetIndex, fields, name, condition)
        )
    targets = {"step": "traces.step", "run": "traces.run"}
    related = {
        ("step", "run"): "steps",
        ("step", "parent"): "children",
        ("call", "step"): "calls",
        ("call", "run"): "calls",
        ("entitylink", "step"): "links",
        ("entitylink", "run"): "links",
        ("logentry", "run"): "logs",
        ("logentry", "step"): "logs",
    }
    for model, field in FOREIGN_KEYS:
        nullable = (model, field) in {("step", "parent"), ("logentry", "step")}
        yield migrations.AlterField(
            model_name=model,
            name=field,
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name=related[(model, field)],
                to="traces.step" if field == "parent" else targets[field],
                **({"blank": True, "null": True} if nullable else {}),
            ),
        )


def _foreign_key_index(apps, schema_editor, model: str, field: str) -> tuple[str, str, str]:
    """(index name, table, column) of the index Django made for the foreign key."""
    table = apps.get_model("traces", model)._meta.db_table
    column = f"{field}_id"
    return schema_editor._create_index_name(table, [column], suffix=""), table, column


def _exists(schema_editor, name: str) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_class WHERE relname = %s AND relkind = 'i'", [name])
        return cursor.fetchone() is not None


def forwards(apps, schema_editor):
    quote = schema_editor.quote_name
    for model, field in FOREIGN_KEYS:
        name, _, _ = _foreign_key_index(apps, schema_editor, model, field)
        schema_editor.execute(f"DROP INDEX IF EXISTS {quote(name)}")
    if schema_editor.connection.vendor != "postgresql":
        return
    for model, name, _, _ in TWINS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {quote(name)}")
        if _exists(schema_editor, f"{name}_nl"):
            schema_editor.execute(f"ALTER INDEX {quote(name + '_nl')} RENAME TO {quote(name)}")
        else:  # a database that never had the twin: build the one kept
            klass = apps.get_model("traces", model)
            [index] = [index for index in klass._meta.indexes if index.name == name]
            schema_editor.add_index(klass, index)


def backwards(apps, schema_editor):
    quote = schema_editor.quote_name
    for model, field in FOREIGN_KEYS:
        name, table, column = _foreign_key_index(apps, schema_editor, model, field)
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(table)} ({quote(column)})"
        )
    if schema_editor.connection.vendor != "postgresql":
        return
    for model, name, fields, condition in TWINS:
        schema_editor.execute(f"ALTER INDEX {quote(name)} RENAME TO {quote(name + '_nl')}")
        schema_editor.add_index(
            apps.get_model("traces", model), _index(models.Index, fields, name, condition)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0026_logs"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=list(_state_operations())),
        migrations.RunPython(forwards, backwards),
    ]
