"""The per-row shortcuts of the ingest (issue 12) give what the long way gives."""

import math
from datetime import UTC

import pytest
from django.db import connection
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from traces.ingest.common import _parse_iso_text, parse_iso
from traces.ingest.inserters import (
    _sqlite_utc_text,
    clean_value,
    dump_json,
    kept_as_is,
    row_plan,
    time_adapter,
)
from traces.ingest.records import ParseError, StepRecord
from traces.ingest.sqlite_layout import _status_of, lenient_time, normalise_status, to_time
from traces.ingest.store import RUN_FIELDS, _new_run
from traces.ingest.workflow.steps import _GO_DURATION, _GO_UNIT_MS, go_duration_ms
from traces.models import Run, Step

_TIMES = [
    "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.123456789Z", "2024-01-01T00:00:00.5z",
    "2024-01-01 00:00:00+00:00", "2024-01-01T00:00:00+02:00", "2024-01-01T00:00:00",
    "2024-01-01", "20240101", "2024-01-01T00:00:00.Z", " 2024-01-01T00:00:00Z ",
    "2024-01-01T00:00:00,5Z", "2024-W01-1", "9999-12-31T23:00-05:00", "0001-01-01T00:00:00Z",
    "1700000000", "1700000000.5", "17000000", "2024-13-01T00:00:00Z", "noon", "2024-01-01T24:00Z",
    "2024-01-01T00:00:00.000000000+00:00", "2024-01-01T10:20:30.1-01:30",
]  # fmt: skip


def _long_way(text: str):
    try:
        return _parse_iso_text(text, "t")
    except ParseError as exc:
        return str(exc)


def _short_way(text: str):
    try:
        return parse_iso(text, "t")
    except ParseError as exc:
        return str(exc)


@pytest.mark.parametrize("text", _TIMES)
def test_iso_times_read_in_one_call_are_the_times_of_the_long_way(text):
    short = _short_way(text)
    assert short == _long_way(text)
    if not isinstance(short, str):
        assert short.tzinfo is not None and short.utcoffset().total_seconds() == 0


@given(
    st.datetimes() | st.datetimes(timezones=st.timezones()),
    st.sampled_from(["T", " "]),
    st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]),
    st.sampled_from(["", "Z", "9"]),
)
def test_any_iso_time_reads_as_the_long_way_reads_it(moment, sep, spec, tail):
    text = moment.isoformat(sep, spec)
    if tail == "Z" and moment.tzinfo is None:
        text += "Z"
    elif tail == "9" and "." in text and moment.tzinfo is None:
        text += "987"  # nanoseconds, as Go writes them
    assert _short_way(text) == _long_way(text)


def test_a_new_run_made_without_model_init_is_the_model_inits():
    def fields(run):
        return {k: v for k, v in vars(run).items() if k not in ("_state", "ingested_at")}

    made, model = _new_run("runs", "o", "x"), Run(format="runs", origin="o", external_id="x")
    assert fields(made) == fields(model)
    assert made.attributes is not _new_run("runs", "o", "y").attributes  # no shared default
    assert made._state.adding and made.ingested_at is not None


@pytest.mark.django_db
@given(
    name=st.text(max_size=20) | st.text(min_size=495, max_size=505) | st.none() | st.integers(),
    error=st.text(max_size=50),
    attempt=st.none() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=3),
    duration=st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(),
    truncated=st.booleans() | st.none() | st.integers(0, 2),
    key=st.text(min_size=1, max_size=300),
)
@example(name="n" * 505, error="", attempt=None, duration=None, truncated=False, key="k")
@example(name="n", error="a\x00b", attempt=2**40, duration=math.nan, truncated=None, key="k")
def test_a_row_checked_by_column_groups_is_the_row_of_a_cleaner_per_column(
    name, error, attempt, duration, truncated, key
):
    """RowPlan cleans a group of columns only when their quick check fails: the
    row and the attributes it keeps are those of cleaning every value."""
    plan = row_plan(Step, StepRecord, ("id",))
    step = StepRecord(key=key, name=name, error=error, attempt=attempt, duration_ms=duration,
                      truncated=truncated)  # fmt: skip
    attributes, expected_attributes = {}, {}
    expected = [
        clean(value, expected_attributes)
        for clean, value in zip(plan.cleaners, plan.get(step), strict=True)
    ]
    row = plan.row(step, attributes, (1,))
    assert row[: len(expected)] == expected
    assert attributes == expected_attributes


# --- issue 12, the parsers' and cleaners' per-row shortcuts (branch wip-parse) -----------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**64, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
    | st.sampled_from(["a\x00b", "\\u0000", "\ud800"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6,
)  # fmt: skip
_MOMENTS = st.none() | st.datetimes(timezones=st.none() | st.timezones())


@pytest.mark.django_db
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(input_=_JSON, output=_JSON, started=_MOMENTS, finished=_MOMENTS, attributes=_JSON)
@example(input_={"n": 2**70}, output="a\x00b", started=None, finished=None, attributes={})
def test_a_rows_json_and_times_are_those_of_the_cleaners_long_way(
    input_, output, started, finished, attributes
):
    """The generated row dumps JSON inline and writes UTC times by orjson: the same
    text as dump_json and as Django's SQLite adapter (naive UTC isoformat)."""
    plan = row_plan(Step, StepRecord, ("id",))
    step = StepRecord(key="k", input=input_, output=output, started_at=started,
                      finished_at=finished)  # fmt: skip
    given_attributes = attributes if isinstance(attributes, dict) else {"value": attributes}
    row = plan.row(step, dict(given_attributes), (1,))
    at = plan.at
    assert row[at["input"]] == (None if input_ is None else dump_json(input_))
    assert row[at["output"]] == (None if output is None else dump_json(output))
    assert row[at["attributes"]] == dump_json(given_attributes)
    for name, moment in (("started_at", started), ("finished_at", finished)):
        assert row[at[name]] == _stored_time(moment)


def _stored_time(moment):
    """What Django's SQLite backend stores for a datetime (the long way)."""
    if moment is None or connection.vendor != "sqlite":
        return moment
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(" ")


@given(st.datetimes(timezones=st.just(UTC)) | st.datetimes(timezones=st.timezones()))
def test_utc_text_by_orjson_is_isoformat(moment):
    assert _sqlite_utc_text(moment) == moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


_ANY_VALUE = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | _MOMENTS
    | st.text(alphabet="ab\x00", max_size=3) | st.text(min_size=190, max_size=260)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)  # fmt: skip


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(RUN_FIELDS), value=_ANY_VALUE)
@example(name="duration_ms", value=math.nan)
@example(name="items_total", value=2**31)
@example(name="name", value="x" * 500)
@example(name="started_at", value=None)
def test_a_runs_values_kept_as_they_are_are_what_clean_value_gives(name, value):
    """store._run_row calls clean_value only for values `kept_as_is` refuses: what
    it accepts, clean_value gives back unchanged (same type) and notes nothing."""
    column = Run._meta.get_field(name)
    if kept_as_is(column)(value):
        attributes = {}
        cleaned = clean_value(column, value, attributes)
        assert type(cleaned) is type(value) and attributes == {}
        assert cleaned == value or (cleaned != cleaned and value != value)


@pytest.mark.django_db
@settings(deadline=None)
@given(_MOMENTS)
def test_the_stores_times_are_djangos_parameters(moment):
    """A link's or a subject step's time, adapted without Django's per-value look-ups
    (store._RunWriter.db_time), is what Django's adapter makes of it."""
    assert time_adapter()(moment) == connection.ops.adapt_datetimefield_value(moment)


@pytest.mark.parametrize(
    "value", ["2026-03-02T05:40:00Z", "2026-03-02 05:40:00.5", "1772431201111", "soon", "", None]
)
def test_times_remembered_are_the_times_read(value):
    fresh, first, again = {}, {}, {}
    try:
        expected = to_time(value, "t")
    except ParseError:
        expected = None
        fresh["unreadable_times"] = {"t": value}
    assert lenient_time(value, first, "t") == expected
    # The second read comes from memory, and an unreadable time is noted again.
    assert lenient_time(value, again, "t") == expected
    assert first == again == fresh


@pytest.mark.parametrize("word", ["COMPLETED", "in-progress", "Timed Out", "weird", "", "ok"])
def test_status_words_remembered_are_the_words_read(word):
    assert normalise_status(word) == normalise_status(word) == _status_of(word, None)
    assert normalise_status(word.encode()) == _status_of(word, None)


@given(
    st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False).map(str),
    st.sampled_from(["ns", "us", "µs", "μs", "ms", "s", "m", "h"]),
    st.sampled_from(["", "-", "+"]),
)
def test_a_go_duration_of_one_unit_reads_as_the_general_way(number, unit, sign):
    text = f"{sign}{number}{unit}"
    parts = _GO_DURATION.findall(text.lstrip("+-"))
    total = sum(float(n) * _GO_UNIT_MS[u] for n, u in parts)
    assert go_duration_ms(text) == (-total if sign == "-" else total)
