import shutil
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def runs_db(samples, tmp_path) -> Path:
    """A copy of the runs sample database, for tests that change it as its writer would."""
    path = tmp_path / "runs.sqlite"
    shutil.copy(samples / "runs/runs.sqlite", path)
    path.chmod(0o644)
    return path


@pytest.fixture(autouse=True)
def _ingest_inline(settings):
    """Uploads and rescans run inline in tests; tests of the background worker
    (tests/test_tasks.py) switch it back on."""
    settings.TRACER_INGEST_IN_BACKGROUND = False
    settings.TASKS = {
        "default": {
            "BACKEND": "django_tasks.backends.immediate.ImmediateBackend",
            "QUEUES": ["default", "ingest"],
        }
    }


@pytest.fixture(autouse=True)
def _open_writes(settings):
    """Uploads, sources and deletions need a permission unless TRACER_OPEN_WRITES is on:
    on in tests, as in local use; tests/test_access.py turns it off."""
    settings.TRACER_OPEN_WRITES = True


# --- the "Load and faults" table of docs/RELIABILITY.md -------------------------------------

FAULT_SCENARIOS = ("read-load", "duckflux-rewrites", "runs-db-writer", "sigkill")
RELIABILITY_HEADING = "## Load and faults"


class ReliabilityRows:
    """Rows added by tests/test_faults.py and tests/browser/test_hostile.py; written
    to docs/RELIABILITY.md (only its own section) once every fault scenario ran."""

    def __init__(self):
        self.rows: dict[str, tuple] = {}

    def add(self, key, scenario, volume, *, errors=0, lost=0, duplicated=0, scripts=0, notes=""):
        self.rows[key] = (scenario, volume, errors, lost, duplicated, scripts, notes)

    def section(self, vendor: str) -> str:
        import os
        from datetime import date

        lines = [
            RELIABILITY_HEADING,
            "",
            "Written by `tests/test_faults.py` (and `tests/browser/test_hostile.py`) at the",
            f"end of a run that includes them (database: {vendor}; {os.cpu_count()} cores;",
            f"{date.today()}). Every loop is bounded and on loopback. Regenerate with",
            "`make reliability` (these tests with TRACER_UPDATE_DOCS=1; other runs write",
            "var/RELIABILITY-<database>.md); a minute of read load, on demand:",
            "`.venv/bin/python bench/load_test.py`.",
            "",
            "| scenario | runs / requests | errors | lost runs | duplicated runs | scripts run "
            "| notes |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        order = [*FAULT_SCENARIOS, "hostile"]
        for key in sorted(self.rows, key=lambda k: order.index(k) if k in order else len(order)):
            scenario, volume, *counts, notes = self.rows[key]
            cells = [scenario, volume, *(str(n) for n in counts), notes]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        lines += [
            "",
            '- *errors*: answers other than 200 or saying "database is locked"; runs whose',
            "  final state differs from the source's. *scripts run*: pages on which a script",
            "  from a trace ran, a dialog opened or the Content-Security-Policy had to block",
            "  one. All must be 0.",
            "",
        ]
        return "\n".join(lines)

    def write(self, vendor: str) -> None:
        target = reliability_target(vendor)
        target.parent.mkdir(exist_ok=True)
        old = target.read_text() if target.exists() else "# Reliability\n"
        new = replace_section(old, RELIABILITY_HEADING, self.section(vendor))
        if new != old:
            target.write_text(new)


def reliability_target(vendor: str) -> Path:
    """Where the fault and corpus tests write their tables: docs/RELIABILITY.md only
    when asked (`make reliability`, TRACER_UPDATE_DOCS=1, on SQLite), so a test run
    leaves the checkout as it found it; var/RELIABILITY-<vendor>.md otherwise."""
    import os

    root = Path(__file__).resolve().parent.parent
    if vendor == "sqlite" and os.environ.get("TRACER_UPDATE_DOCS") == "1":
        return root / "docs" / "RELIABILITY.md"
    return root / "var" / f"RELIABILITY-{vendor}.md"


def replace_section(text: str, heading: str, section: str) -> str:
    """`text` with the level-2 section under `heading` replaced (or appended)."""
    lines = text.splitlines()
    if heading not in lines:
        return text.rstrip("\n") + "\n\n" + section
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    after = "\n".join(lines[end:])
    return "\n".join(lines[:start]) + "\n" + section + ("\n" + after + "\n" if after else "")


@pytest.fixture(scope="session")
def reliability_rows():
    rows = ReliabilityRows()
    yield rows
    if all(key in rows.rows for key in FAULT_SCENARIOS):
        from django.db import connection

        rows.write(connection.vendor)
