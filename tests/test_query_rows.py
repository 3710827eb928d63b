"""queries.rows: a window's instances built without Model.__init__ are Django's."""

from __future__ import annotations

import pytest
from django.db.models import QuerySet

from traces.models import Step
from traces.queries.rows import RowIterable, fast_rows
from traces.queries.steps import step_rows

from .factories import make_runs, make_steps

pytestmark = pytest.mark.django_db


def _plain(queryset: QuerySet) -> QuerySet:
    clone = queryset.all()
    clone._iterable_class = QuerySet(Step)._iterable_class
    return clone


def _fields(step: Step) -> dict:
    return {name: value for name, value in vars(step).items() if name != "_state"}


def test_a_window_s_instances_are_the_ones_django_builds():
    (run,) = make_runs(1)
    (parent,) = make_steps(run, 1, error="x" * 500)
    make_steps(run, 2, parent=parent, status="failed", start=1, error="boom <b>")
    rows = step_rows(Step.objects.filter(run=run)).order_by("seq")
    assert rows._iterable_class is RowIterable
    fast, django = list(rows), list(_plain(rows))
    assert [_fields(step) for step in fast] == [_fields(step) for step in django]
    for step, expected in zip(fast, django, strict=True):
        assert not step._state.adding and step._state.db == expected._state.db == "default"
        assert step.get_deferred_fields() == expected.get_deferred_fields() != set()
        assert step.parent_key == expected.parent_key and step.error_length == expected.error_length
    # A deferred field is read when asked for, as with Django's instance.
    assert fast[0].error == "x" * 500
    assert fast[1].parent == parent and fast[1].parent_key == parent.key
    assert fast[2].error_head == "boom <b>"


def test_select_related_and_known_objects_are_left_to_django():
    (run,) = make_runs(1)
    make_steps(run, 1)
    related = fast_rows(Step.objects.filter(run=run).select_related("run"))
    (step,) = list(related)
    assert step.run.pk == run.pk  # from the join: Django's iterable, not ours
    (through,) = list(fast_rows(run.steps.all()))
    assert through.run is run
