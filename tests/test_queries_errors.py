"""Failures grouped by cause: the normaliser (traces/causes.py), a pure function, and
the groups (traces/queries/errors.py), the same from the read model as from the steps."""

from datetime import datetime, timedelta

import pytest

from tests.factories import BASE_TIME, make_runs, make_steps, recount_failure_causes
from traces.causes import HEADLINE_READ, normalise_error
from traces.ingest import store
from traces.models import Run, Step
from traces.queries import errors


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "insufficient stock for sku SKU-1042: requested 3, available 1",
            "insufficient stock for sku <id>: requested <n>, available <n>",
        ),
        (
            'step "reserve-stock" failed: insufficient stock for sku SKU-7731',
            'step "reserve-stock" failed: insufficient stock for sku <id>',
        ),
        ("503 Service Unavailable", "<n> Service Unavailable"),
        ('ERROR: relation "facts" does not exist', 'ERROR: relation "facts" does not exist'),
        (
            "job 3f2a9c1e-1b2c-4d5e-8f90-0123456789ab timed out after 1m30s",
            "job <id> timed out after <duration>",
        ),
        ("object 01ARZ3NDEKTSV4RRFFQ69G5FAV gone", "object <id> gone"),
        ("commit 9f86d081884c7d65 not found at 0x7ffe12", "commit <id> not found at <id>"),
        ("charge ch_eyja0FMLMWplQR3JYqrpoAe4 failed", "charge <id> failed"),
        ("user bob@example.com is locked", "user <email> is locked"),
        ("failed at 2026-03-02T08:10:50.123Z", "failed at <time>"),
        (
            '{"error":"upstream timeout after 3000ms"}',
            '{"error":"upstream timeout after <duration>"}',
        ),
        ("retry in 5 seconds", "retry in <duration>"),
        ("smtp: 421 4.7.0 Try again later", "smtp: <n> <n> Try again later"),
        ("connect 10.0.0.12:5432 refused", "connect <n> refused"),
        ("keeps v2, E11000 and x86 as words", "keeps v2, E11000 and x86 as words"),
        ("'utf-8' codec, sha-256 and x86_64", "'utf-<n>' codec, sha-<n> and x86_<n>"),
        ("page_1 and SKU-7 are ids", "<id> and <id> are ids"),
        ('invalid value "' + "lorem ipsum " * 8 + '" for note', 'invalid value "<value>" for note'),
        ("  lots   of\tspace  \nsecond line", "lots of space"),
        ("\n\nfirst non-empty line\nsecond", "first non-empty line"),
        (
            "Traceback (most recent call last):\n  File \"x.py\", line 3\nKeyError: 'customer_id'",
            "KeyError: 'customer_id'",
        ),
        ("", ""),
    ],
)
def test_normalise_error_collapses_particulars_into_placeholders(message, expected):
    assert normalise_error(message) == expected


def test_normalise_error_is_at_most_300_characters():
    assert len(normalise_error("x" * 5000)) == 300
    assert normalise_error("x" * 5000).endswith("…")


def test_a_huge_message_is_read_only_as_far_as_its_cause_can_reach():
    line = "timeout after 30 s talking to db-7 " * 20_000  # 700 kB on one line
    assert normalise_error(line) == normalise_error(line[:HEADLINE_READ])
    frames = "".join(f'  File "job.py", line {n}, in step\n' for n in range(50_000))
    traceback = f"Traceback (most recent call last)\n{frames}KeyError: 'sku-1042'\n\n  \n"
    assert normalise_error(traceback) == "KeyError: '<id>'"


def test_normalise_error_groups_the_same_cause_together():
    first = normalise_error("insufficient stock for sku SKU-1042: requested 3, available 1")
    second = normalise_error("insufficient stock for sku SKU-77: requested 12, available 0")
    assert first == second


# --- failures grouped by cause: the read model and the steps give the same groups -----------


def spread_failures() -> list[Run]:
    """Failures of 3 causes in runs of two formats and two types over four days; one
    run's steps have no start (they count on the run's day), one run has no time at
    all (its failures count on no day), and a synthetic failure is left out."""
    nightly = make_runs(2, status="failed", type="nightly")
    hourly = make_runs(1, format="workflow", status="failed", type="hourly")
    for day, run in enumerate([*nightly, *hourly]):
        steps = make_steps(run, 30, status="failed", start=day * 86_400, error=cause_of)
    make_steps(nightly[1], 5, status="failed", start=100, error=cause_of)
    Step.objects.filter(run=nightly[1], position__gte=100).update(started_at=None)
    (untimed,) = make_runs(1, status="failed", type="nightly")
    Run.objects.filter(pk=untimed.pk).update(started_at=None)
    make_steps(untimed, 4, status="failed", error=cause_of)
    Step.objects.filter(run=untimed).update(started_at=None)
    Step.objects.filter(pk=steps[0].pk).update(synthetic=True)  # the last run's
    recount_failure_causes()
    return [*nightly, *hourly, untimed]


def cause_of(n: int) -> str:
    return ["disk full on volume", "lock wait timeout", "no route to host"][n % 3] + f" vol-{n}"


def both_sources(filters: dict, monkeypatch) -> tuple:
    def answer(result):
        return [(g.text, g.count, g.first_seen, g.last_seen, by_day(g.days)) for g in result.groups]

    from_table = errors.failure_groups(filters)
    monkeypatch.setattr(errors, "groups_source", lambda filters: errors.STEPS)
    from_steps = errors.failure_groups(filters)
    monkeypatch.undo()
    assert from_table.from_read_model and not from_steps.from_read_model
    return answer(from_table), answer(from_steps)


def by_day(days: dict) -> dict:
    """Failures per day, from failures per day or per slot."""
    counted: dict = {}
    for key, count in days.items():
        day = key.date() if isinstance(key, datetime) else key
        counted[day] = counted.get(day, 0) + count
    return counted


DAY = BASE_TIME.replace(hour=0)
US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"format": "runs"},
        {"run_type": "hourly"},
        {"since": DAY + timedelta(days=1)},
        {"until": DAY + timedelta(days=1) - timedelta(microseconds=1)},
        {"since": DAY + timedelta(days=1), "until": DAY + timedelta(days=3, microseconds=-1)},
        # FailureSlice's: slots and exact step names.
        {"since": DAY + timedelta(days=1, hours=12, minutes=10)},
        {"since": DAY + timedelta(hours=12), "until": DAY + timedelta(hours=12, minutes=20) - US},
        {"name": "step 1", "name_match": "exact"},
        {"name": "step 172802", "name_match": "exact", "since": DAY + timedelta(days=2, hours=12)},
    ],
)
@pytest.mark.django_db
def test_the_read_model_and_the_steps_give_the_same_groups(filters, monkeypatch):
    spread_failures()
    from_table, from_steps = both_sources(filters, monkeypatch)
    assert from_table == from_steps
    assert from_table  # every filter here keeps some failures


@pytest.mark.django_db
def test_groups_count_every_failure_exactly():
    spread_failures()
    result = errors.failure_groups({})
    failed = Step.objects.filter(status="failed", synthetic=False)
    assert result.steps_read == failed.count() == 3 * 30 + 5 + 4 - 1
    for group in result.groups:
        assert group.count == failed.filter(error_cause=group.text).count()
        assert group.example.startswith(group.text.removesuffix(" <id>"))


@pytest.mark.parametrize(
    ("filters", "from_read_model"),
    [
        ({"format": "runs", "run_type": "nightly", "status": "failed", "after": "x"}, True),
        ({"since": DAY, "until": DAY + timedelta(days=1, microseconds=-1)}, True),
        ({"since": DAY + timedelta(hours=1)}, True),  # a slot's start
        ({"since": DAY + timedelta(hours=1, minutes=5)}, False),
        ({"until": DAY + timedelta(minutes=10) - US}, True),  # a slot's end
        ({"name": "step 1", "name_match": "exact"}, True),
        ({"name": "x" * 100, "name_match": "exact"}, False),  # longer than FailureSlice keeps
        ({"until": DAY + timedelta(days=1)}, False),  # takes in the next day's first instant
        ({"error": "vol"}, False),
        ({"run": 1}, False),
        ({"name": "step 1"}, False),
    ],
)
def test_the_read_model_answers_only_the_filters_it_holds(filters, from_read_model):
    assert errors.read_model_answers(filters) is from_read_model


@pytest.mark.django_db
def test_counts_after_deleting_a_run_are_exact(monkeypatch):
    runs = spread_failures()
    store.delete_runs([runs[0].pk])
    from_table, from_steps = both_sources({}, monkeypatch)
    assert from_table == from_steps
    assert sum(count for _text, count, *_ in from_table) == 2 * 30 + 5 + 4 - 1


@pytest.mark.django_db
def test_sparklines_come_from_the_days(monkeypatch):
    spread_failures()
    result = errors.failure_groups({})
    assert result.spark_unit == "day"
    for group in result.top:
        assert [point["at"] for point in group.spark] == [DAY + timedelta(days=n) for n in range(3)]
        assert sum(point["n"] for point in group.spark) == sum(group.days.values())


@pytest.mark.django_db
def test_groups_first_and_last_seen_are_their_failures_own(monkeypatch):
    """Recounted from the steps in Python: each cause's earliest and latest failure
    (its start, else its run's), whole seconds and microseconds mixed (SQLite keeps
    them as text, with and without a fraction)."""
    spread_failures()
    for index, step in enumerate(Step.objects.filter(status="failed").exclude(started_at=None)):
        if index % 4 == 0:
            Step.objects.filter(pk=step.pk).update(
                started_at=step.started_at + timedelta(microseconds=index * 37 + 1)
            )
    recount_failure_causes()
    expected: dict[str, list] = {}
    for step in Step.objects.filter(status="failed", synthetic=False).select_related("run"):
        moment = step.started_at or step.run.started_at
        entry = expected.setdefault(step.error_cause, [0, None, None])
        entry[0] += 1
        if moment is not None:
            entry[1] = min(entry[1] or moment, moment)
            entry[2] = max(entry[2] or moment, moment)
    for source in both_sources({}, monkeypatch):
        assert {text: [n, first, last] for text, n, first, last, _days in source} == expected
        assert all(first.tzinfo is not None for _t, _n, first, _l, _d in source if first)


@pytest.mark.django_db
def test_the_slot_sql_runs_under_a_debug_cursor_too():
    """A debug cursor (DEBUG, or a test capturing queries) writes each statement out
    with its parameters by `%`: the slot SQL's own `%` must survive it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    runs = spread_failures()
    with CaptureQueriesContext(connection) as captured:
        grouped = errors.failure_groups(
            {"error": "vol", "since": DAY + timedelta(days=2), "until": DAY + timedelta(days=3)}
        )
        store.delete_runs([runs[0].pk])
    assert grouped.groups and grouped.source == errors.STEPS
    assert any("failureslice" in query["sql"] for query in captured.captured_queries)
