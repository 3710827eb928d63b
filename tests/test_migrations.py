"""Data migrations, run forward from the state before them."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.mark.django_db(transaction=True)
def test_greentic_runs_stored_before_the_flag_are_marked_estimated():
    apps = migrate(("traces", "0006_drop_ingestjob_paths_kind"))
    Run = apps.get_model("traces", "Run")
    for format in ("greentic", "runs"):
        Run.objects.create(format=format, external_id=f"old-{format}", status="succeeded")
    apps = migrate(("traces", "0007_greentic_times_estimated"))
    marked = apps.get_model("traces", "Run").objects.values_list("format", "times_estimated")
    assert sorted(marked) == [("greentic", True), ("runs", False)]
    migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("traces")))
