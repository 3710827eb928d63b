"""The model's own rules: a run's stale-ness, per instance and per query."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import make_runs
from traces.models import Run

pytestmark = pytest.mark.django_db


def test_stale_runs_are_the_runs_that_say_they_are_stale(settings):
    settings.TRACER_STALE_AFTER = timedelta(minutes=10)
    now = timezone.now()
    quiet = {"quiet": now - timedelta(minutes=11), "recent": now - timedelta(minutes=9)}
    for name, written in quiet.items():
        for status in ("running", "succeeded"):
            (run,) = make_runs(1, status=status, name=f"{name} {status}")
            Run.objects.filter(pk=run.pk).update(source_updated_at=written)
    make_runs(1, status="running", name="never written")
    stale = sorted(Run.objects.stale().values_list("name", flat=True))
    assert stale == ["quiet running"]
    assert stale == sorted(run.name for run in Run.objects.all() if run.is_stale)
