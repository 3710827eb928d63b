"""duckflux SQLite files (`traces/ingest/duckflux/sqlite_file.py`)."""

from __future__ import annotations

import sqlite3

import pytest

from tests.duckflux_files import (
    SQLITE_DDL,
    parse_one,
    step,
    trace,
    write_sqlite,
)
from traces.ingest import duckflux
from traces.ingest.common import read_head
from traces.ingest.records import ParseError

# --------------------------------------------------------------------------- SQLite


def test_sqlite_without_an_execution_row(tmp_path):
    path = tmp_path / "starting.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE_DDL)
    conn.close()
    assert duckflux.sniff(path, read_head(path))
    with pytest.raises(ParseError, match="no execution row"):
        parse_one(path)


def test_sqlite_without_a_steps_table(tmp_path):
    path = tmp_path / "half.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE_DDL.split(";")[0])
    conn.close()
    with pytest.raises(ParseError, match="table 'steps' is missing"):
        parse_one(path)


def test_sqlite_values_raw_strings_and_json(tmp_path):
    document = trace(
        [
            step(1, "exec", 1, 2, input='"quoted"', output="14000"),
            step(2, "exec", 2, 3, input="none", output={"a": [1, 2]}),
        ],
        output="merged\n",
    )
    path = write_sqlite(tmp_path / "v.sqlite", document)
    run = parse_one(path)
    one, two = run.steps
    # Strings are stored raw: JSON text decodes, except to a string.
    assert (one.input, one.output) == ('"quoted"', 14000)
    assert (two.input, two.output) == ("none", {"a": [1, 2]})
    assert run.output == "merged\n"
    assert [s.attributes["row_id"] for s in run.steps] == [1, 2]


def test_sqlite_bad_value_names_its_row(tmp_path):
    path = write_sqlite(tmp_path / "b.sqlite", trace([step(1, "exec", 1, 2)]))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE steps SET loop_index = 'first'")
    conn.commit()
    conn.close()
    with pytest.raises(ParseError, match=r"^steps row 1\.loopIndex: expected an integer"):
        parse_one(path)
