"""PostgreSQL keeps the long values of the tables an ingest writes compressed by lz4
(traces/ingest/pg_storage.py, migration 0039_pgcopy): the same values, written with
half the server's CPU for large payloads."""

import json

import pytest
from django.db import connection

from traces.ingest import pg_storage
from traces.ingest.loader import ingest_paths
from traces.models import Step

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's storage"),
]


@pytest.fixture(autouse=True)
def lz4():
    with connection.cursor() as cursor:
        if not pg_storage.lz4_supported(cursor):
            pytest.skip("this PostgreSQL was built without lz4 (the columns keep pglz)")


def test_every_long_value_column_of_the_written_tables_is_lz4():
    """A column a later migration adds must say so too (its default is pglz)."""
    with connection.cursor() as cursor:
        for table in pg_storage.WRITTEN_TABLES:
            columns = dict(pg_storage.compressible_columns(cursor, table))
            assert columns, table
            assert {name for name, method in columns.items() if method != "l"} == set(), table


def test_a_large_value_is_stored_by_lz4_and_reads_back_the_same(samples, tmp_path):
    source = sorted((samples / "duckflux" / "json").glob("*.json"))[0]
    doc = json.loads(source.read_text())
    output = {"rows": [{"id": f"cus_{n}", "note": "paid " * 20} for n in range(400)]}
    doc["steps"][0]["output"] = output
    path = tmp_path / source.name
    path.write_text(json.dumps(doc))
    report = ingest_paths([path])
    assert report.summary()["errors"] == []
    step = Step.objects.get(output__rows__0__id="cus_0")
    assert step.output == output
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_compression(output) FROM traces_step WHERE id = %s", [step.pk]
        )
        assert cursor.fetchone()[0] == "lz4"
