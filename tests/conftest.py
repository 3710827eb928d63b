from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture
def samples() -> Path:
    return SAMPLES


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
