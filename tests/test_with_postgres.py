"""scripts/with_postgres.py: a throwaway server by default, a kept cluster whose data a
later run finds again with --keep DIR (the 10,000,000-step benchmark database)."""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "with_postgres.py"

pytestmark = pytest.mark.skipif(
    not (shutil.which("initdb") or glob.glob("/usr/lib/postgresql/*/bin/initdb")),
    reason="PostgreSQL's server binaries are not installed",
)

# Runs inside the script's environment: one statement, its first value printed.
QUERY = """
import os, sys, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    cursor = conn.execute(sys.argv[1])
    row = cursor.fetchone() if cursor.description else None
print(os.environ.get("TRACER_PG_KEEP", "-"), row[0] if row else "-")
"""


@pytest.fixture
def folder():
    # Not under pytest's tmp_path: the server runs as `postgres` when we are root,
    # and must be able to reach the folder.
    parent = tempfile.mkdtemp(prefix="tracer-test-keep-")
    os.chmod(parent, 0o755)
    yield Path(parent)
    shutil.rmtree(parent, ignore_errors=True)


def run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def query(keep: Path | None, sql: str) -> subprocess.CompletedProcess:
    prefix = ["--keep", str(keep)] if keep else []
    return run(*prefix, sys.executable, "-c", QUERY, sql)


def test_a_kept_cluster_keeps_its_data_and_port_for_the_next_run(folder):
    keep = folder / "cluster"
    first = query(keep, "CREATE TABLE kept AS SELECT 42 AS answer")
    assert first.returncode == 0, first.stderr
    assert "kept server" in first.stdout
    port = (keep / "port").read_text().strip()
    assert f"127.0.0.1:{port}" in first.stdout
    assert (keep / "data" / "PG_VERSION").exists()
    # Stopped after the command, cleanly: no server left behind.
    assert not (keep / "data" / "postmaster.pid").exists()

    again = query(keep, "SELECT answer FROM kept")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == f"{keep} 42"
    assert f"127.0.0.1:{port}" in again.stdout  # the same port while it is free


def test_a_throwaway_server_passes_the_exit_code_and_leaves_no_keep_note():
    done = query(None, "SELECT 1")
    assert done.returncode == 0, done.stderr
    assert "throwaway server" in done.stdout
    assert done.stdout.splitlines()[-1] == "- 1"
    failed = run(sys.executable, "-c", "raise SystemExit(3)")
    assert failed.returncode == 3
