"""The log search's step filter over the names a step may have, written by the ingest
(LogEntry.step_name) and matched inside the index (SQLite's FTS5 column, PostgreSQL's
GIN key): quotes and FTS5 syntax, case and punctuation that tokenise alike, non-ASCII,
a name cut to its column's length, a NUL, the empty name, two runs sharing a name."""

from datetime import timedelta

import pytest

import traces.search.logs as search_logs_module
from tests.factories import BASE_TIME
from traces.ingest import store
from traces.ingest.records import LogRecord, RunRecord, StepRecord
from traces.models import LogEntry, Step
from traces.search.logs import search_logs

pytestmark = pytest.mark.django_db

LONG = "step " + "x" * 600
NAMES = (
    'say "hi"', "NEAR(a b)", "a OR b", "-x", "*", "fetch", "Fetch", "fetch!", "a-b", "a b",
    "étape", "数据", LONG, "nul\x00name", "",
)  # fmt: skip


def _record(external_id: str) -> RunRecord:
    record = RunRecord(
        format="otlp", external_id=external_id, status="succeeded", type="names",
        started_at=BASE_TIME, finished_at=BASE_TIME + timedelta(seconds=3), duration_ms=3000,
    )  # fmt: skip
    record.steps = [
        StepRecord(key=str(index), name=name, status="succeeded", started_at=BASE_TIME)
        for index, name in enumerate(NAMES)
    ]
    record.logs = [
        LogRecord(seq=index, message=f"zebra {index}", step_key=str(index))
        for index in range(len(NAMES))
    ]
    record.logs.append(LogRecord(seq=len(NAMES), message="zebra alone"))
    return record


@pytest.mark.parametrize("named", [0, 1000])
def test_each_name_finds_its_lines_alone_in_every_run(monkeypatch, named):
    """NAMED_LINES 0: the name matched inside the index; 1000: its few lines read
    through their steps. Either way, exactly the lines of steps of that name."""
    monkeypatch.setattr(search_logs_module, "NAMED_LINES", named)
    for run in ("one", "two"):
        store.write_run(_record(run), source_file=None, origin="")
    lines = list(LogEntry.objects.select_related("step"))
    assert [
        line.pk for line in lines if line.step_name != (line.step.name if line.step else "")
    ] == []
    stored = Step.objects.values_list("name", flat=True).distinct()
    assert max(len(name) for name in stored) == 500
    for name in stored:
        wanted = sorted(
            (line.pk for line in lines if line.step is not None and line.step.name == name),
            reverse=True,
        )
        if name:
            assert len(wanted) == 2, name
        hits = search_logs("zebra", {"step": name})
        assert [hit.pk for hit in hits.items] == (
            wanted if name else sorted((line.pk for line in lines), reverse=True)
        ), repr(name)
    # A name no step has (the long one uncut, a case the index folds).
    for name in (LONG, "FETCH", "a  b"):
        assert search_logs("zebra", {"step": name}).items == [], name
