from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.factories import make_runs, make_steps
from traces.ingest import parallel
from traces.models import IngestClaim, Run, Step

pytestmark = pytest.mark.django_db


def test_prune_deletes_old_runs_with_everything_under_them_in_batches(capsys):
    old = make_runs(7, name="old")
    Run.objects.filter(pk__in=[r.pk for r in old]).update(
        started_at=timezone.now() - timedelta(days=40)
    )
    for run in old:
        make_steps(run, 3)
    fresh = make_runs(2, name="fresh")
    Run.objects.filter(pk__in=[r.pk for r in fresh]).update(started_at=timezone.now())
    make_steps(fresh[0], 2)
    call_command("prune", "--older-than", "30d", "--batch-size", "3")
    assert set(Run.objects.values_list("name", flat=True)) == {"fresh"}
    assert Step.objects.count() == 2
    assert "deleted 7 runs" in capsys.readouterr().out


def test_prune_dry_run_deletes_nothing(capsys):
    make_runs(2)
    Run.objects.update(started_at=timezone.now() - timedelta(days=3))
    call_command("prune", "--older-than", "1d", "--dry-run")
    assert Run.objects.count() == 2
    assert "2 runs would be deleted" in capsys.readouterr().out


def test_prune_rejects_an_unreadable_age():
    with pytest.raises(CommandError, match="30 days"):
        call_command("prune", "--older-than", "30 days")


def test_prune_left_source_deletes_only_the_history_of_overwritten_sources(capsys):
    now = timezone.now()
    current, recent, long_gone = make_runs(3)
    Run.objects.update(started_at=now - timedelta(days=90))  # all old: age alone is not it
    Run.objects.filter(pk=recent.pk).update(left_source_at=now - timedelta(days=1))
    Run.objects.filter(pk=long_gone.pk).update(left_source_at=now - timedelta(days=40))
    make_steps(long_gone, 2)
    call_command("prune", "--left-source", "--older-than", "30d")
    assert set(Run.objects.values_list("pk", flat=True)) == {current.pk, recent.pk}
    assert not Step.objects.filter(run_id=long_gone.pk).exists()
    assert "deleted 1 run (no longer in their source before" in capsys.readouterr().out
    call_command("prune", "--left-source")
    assert list(Run.objects.values_list("pk", flat=True)) == [current.pk]


def test_prune_needs_to_be_told_what_to_delete():
    with pytest.raises(CommandError, match="--left-source"):
        call_command("prune")


def test_prune_deletes_the_shares_of_parallel_ingests_left_long_ago(capsys):
    long_ago = timezone.now() - parallel.ABANDONED_AFTER - timedelta(minutes=1)
    # A planner killed long ago: one share taken by a worker that died too, one never taken.
    IngestClaim.objects.create(batch="dead", created_at=long_ago, state="taken", taken_at=long_ago)
    IngestClaim.objects.create(batch="dead", created_at=long_ago)
    # Planned long ago, its last share still being read (its worker refreshes it).
    IngestClaim.objects.create(batch="slow", created_at=long_ago, state="done", taken_at=long_ago)
    IngestClaim.objects.create(batch="slow", created_at=long_ago, state="taken")
    IngestClaim.objects.filter(batch="slow", state="taken").update(taken_at=timezone.now())
    IngestClaim.objects.create(batch="new")

    call_command("prune", "--ingest-shares")

    assert set(IngestClaim.objects.values_list("batch", flat=True)) == {"slow", "new"}
    assert IngestClaim.objects.count() == 3
    assert "deleted 2 shares of parallel ingests" in capsys.readouterr().out


def test_every_prune_deletes_abandoned_shares_but_a_dry_run_does_not():
    long_ago = timezone.now() - parallel.ABANDONED_AFTER - timedelta(minutes=1)
    IngestClaim.objects.create(batch="dead", created_at=long_ago)
    call_command("prune", "--older-than", "30d", "--dry-run")
    assert IngestClaim.objects.exists()
    call_command("prune", "--older-than", "30d")
    assert not IngestClaim.objects.exists()
