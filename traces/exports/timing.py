"""Steps in seq order, a batch at a time, each placed on the run's clock in
nanoseconds since the epoch.

Rows are read as named tuples (`rows()`: the model's field names, `pk` for the id),
not model instances: building 100,000 Step and Call instances was a quarter of an
export's time (bench/RESULTS.md §11g, §13h)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from django.db.models import QuerySet

from traces.models import Run, Step

# Under SQLite's 999 bound variables for the batch's `step_id IN (...)`.
BATCH = 900
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Values can be 100 MB each and are not exported (the JSON API has them); the
# compare path is the compare page's.
_NOT_EXPORTED = ("id", "input", "output", "path")


@dataclass(slots=True)
class Placed:
    """A step and its span: `start_ns`/`end_ns` are None when unknown; `estimated`
    when laid end to end by duration (the source recorded no start)."""

    step: Any  # a row of rows(): a Step's fields but input, output and path
    start_ns: int | None
    end_ns: int | None
    estimated: bool


def nanos(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def millis_to_nanos(value: float | None) -> int | None:
    return None if value is None else round(value * 1_000_000)


def run_span_times(run: Run) -> tuple[int | None, int | None]:
    """The run's own start and end: its duration wins over its finish time, as for steps."""
    start = nanos(run.started_at)
    return start, _end(start, run.duration_ms, run.finished_at)


def placed_batches(run: Run) -> Iterator[list[Placed]]:
    """The run's steps in seq order (parents first), `BATCH` at a time, placed.
    A step without a start but with a duration is laid after the previous such
    step from the run's start (greentic records durations only), as the timeline does."""
    steps = rows(Step.objects.filter(run=run).order_by("seq"), exclude=_NOT_EXPORTED)
    clock = _EndToEnd(nanos(run.started_at) or 0)
    for batch in batched(steps.iterator(chunk_size=BATCH), BATCH):
        yield [clock.place(step) for step in batch]


def rows(queryset: QuerySet, *, exclude: tuple[str, ...] = ("id",)) -> QuerySet:
    """The queryset's rows as named tuples of its model's columns but `exclude`, the
    id as `pk` (attributes read as on an instance; JSON and times converted)."""
    names = [f.attname for f in queryset.model._meta.concrete_fields if f.attname not in exclude]
    return queryset.values_list("pk", *names, named=True)


def in_ids(column: str, ids: list[int]) -> str:
    """`column IN (...)` for ids the database gave (integers), written out: Django's
    `__in` prepares each of a batch's 900 values through the field, a sixth of an
    export's queries' time."""
    return f"{column} IN ({','.join(str(int(i)) for i in ids)})"


class _EndToEnd:
    def __init__(self, origin_ns: int):
        self.cursor = origin_ns

    def place(self, step) -> Placed:
        start = nanos(step.started_at)
        if start is not None:
            return Placed(step, start, _end(start, step.duration_ms, step.finished_at), False)
        duration = millis_to_nanos(step.duration_ms)
        if duration is None:
            return Placed(step, None, None, False)
        start, self.cursor = self.cursor, self.cursor + duration
        return Placed(step, start, self.cursor, True)


def _end(start: int | None, duration_ms: float | None, finished: datetime | None) -> int | None:
    if start is not None and duration_ms is not None:
        return start + millis_to_nanos(duration_ms)
    return nanos(finished)


def batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
