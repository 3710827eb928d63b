"""Prune and the delete buttons (a run's, the admin's, a source's with its runs) try
their transaction again when it met another writer, as the ingest tries a file again
(batches.retried): prune locks runs in id order while an ingest locks them in its
file's order, so on PostgreSQL the two can deadlock and one is failed (40P01)."""

import threading

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from tests.read_models import until_one_waits_on_a_lock
from tests.test_read_model_hostile import all_exact
from traces.ingest import batches, store
from traces.ingest.loader import ingest_paths
from traces.models import Run, TraceSource


def _deadlock() -> OperationalError:
    error = OperationalError("deadlock detected")
    error.sqlstate = "40P01"
    return error


class DeadlockOnce:
    """Once armed, the first delete's lock of its runs fails as PostgreSQL fails a
    deadlock's victim; the calls made from then on, counted."""

    def __init__(self):
        self.armed = False
        self.calls: list[list[int]] = []

    def arm(self) -> None:
        self.armed = True


@pytest.fixture
def first_lock_deadlocks(monkeypatch) -> DeadlockOnce:
    once = DeadlockOnce()
    lock = store.stored_runs

    def stored_runs(run_ids):
        if once.armed:
            once.calls.append(sorted(run_ids))
            if len(once.calls) == 1:
                raise _deadlock()
        return lock(run_ids)

    monkeypatch.setattr(store, "stored_runs", stored_runs)
    monkeypatch.setattr(batches, "backoff", lambda attempt: 0)
    return once


def _gone(source_ids) -> None:
    assert not Run.objects.filter(pk__in=source_ids).exists()
    all_exact()


@pytest.mark.django_db
def test_prune_tries_a_batch_that_met_a_deadlock_again(runs_db, first_lock_deadlocks):
    ingest_paths([runs_db])
    old = list(Run.objects.order_by("pk").values_list("pk", flat=True)[:2])
    Run.objects.filter(pk__in=old).update(left_source_at=timezone.now())
    first_lock_deadlocks.arm()
    call_command("prune", "--left-source")
    assert first_lock_deadlocks.calls == [old, old]  # the batch, then again
    _gone(old)


@pytest.mark.django_db
def test_the_delete_button_tries_again(admin_client, samples, first_lock_deadlocks):
    ingest_paths([samples])
    run = Run.objects.order_by("pk").first()
    first_lock_deadlocks.arm()
    response = admin_client.post(reverse("traces:run-delete", args=[run.pk]))
    assert response.status_code == 302
    assert first_lock_deadlocks.calls == [[run.pk], [run.pk]]
    _gone([run.pk])


@pytest.mark.django_db
def test_the_admins_delete_action_tries_again(admin_client, samples, first_lock_deadlocks):
    ingest_paths([samples])
    run_ids = list(Run.objects.order_by("pk").values_list("pk", flat=True)[:3])
    first_lock_deadlocks.arm()
    response = admin_client.post(
        reverse("admin:traces_run_changelist"),
        {"action": "delete_selected", "_selected_action": run_ids, "post": "yes"},
    )
    assert response.status_code == 302
    assert first_lock_deadlocks.calls == [run_ids, run_ids]
    _gone(run_ids)


@pytest.mark.django_db
def test_deleting_a_source_with_its_runs_tries_again(admin_client, samples, first_lock_deadlocks):
    source = TraceSource.objects.create(path=str(samples))
    ingest_paths([samples], source=source)
    run_ids = list(Run.objects.values_list("pk", flat=True))
    assert run_ids
    first_lock_deadlocks.arm()
    response = admin_client.post(
        reverse("traces:source-delete", args=[source.pk]), {"delete_runs": "on"}
    )
    assert response.status_code == 302
    calls = first_lock_deadlocks.calls
    assert calls[0] == calls[1]
    assert sorted(pk for call in calls[1:] for pk in call) == sorted(run_ids)
    assert not TraceSource.objects.filter(pk=source.pk).exists()
    _gone(run_ids)


@pytest.mark.django_db
def test_an_error_that_is_not_another_writer_is_not_tried_again(runs_db, monkeypatch):
    ingest_paths([runs_db])
    calls = []

    def broken(run_ids):
        calls.append(run_ids)
        raise OperationalError("disk I/O error")

    monkeypatch.setattr(store, "stored_runs", broken)
    Run.objects.update(left_source_at=timezone.now())
    with pytest.raises(OperationalError, match="disk I/O"):
        call_command("prune", "--left-source")
    assert len(calls) == 1


def _locked_once(monkeypatch) -> list:
    """The first delete's lock of its runs fails as SQLite fails a write that waited the
    busy timeout for the write lock; the calls, counted."""
    calls = []
    lock = store.stored_runs

    def stored_runs(run_ids):
        calls.append(sorted(run_ids))
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return lock(run_ids)

    monkeypatch.setattr(store, "stored_runs", stored_runs)
    monkeypatch.setattr(batches, "backoff", lambda attempt: 0)
    return calls


@pytest.fixture
def as_sqlite(monkeypatch):
    """The error read as SQLite's (on PostgreSQL too: only its text is looked at)."""
    monkeypatch.setattr(batches, "sqlite_locked", lambda exc: "database is locked" in str(exc))


@pytest.mark.django_db
def test_prune_waits_again_for_sqlites_write_lock(runs_db, monkeypatch, as_sqlite):
    ingest_paths([runs_db])
    old = list(Run.objects.order_by("pk").values_list("pk", flat=True)[:2])
    Run.objects.filter(pk__in=old).update(left_source_at=timezone.now())
    calls = _locked_once(monkeypatch)
    call_command("prune", "--left-source")
    assert calls == [old, old]
    _gone(old)


@pytest.mark.django_db
def test_the_delete_button_does_not_wait_for_sqlites_lock_again(
    admin_client, samples, monkeypatch, as_sqlite
):
    """A request has already waited the busy timeout (30 s): waiting five times more
    would outlast the web server's timeout, so the lock not had is answered at once,
    as a page saying so (503), not a server error."""
    ingest_paths([samples])
    run = Run.objects.order_by("pk").first()
    calls = _locked_once(monkeypatch)
    url = reverse("traces:run-delete", args=[run.pk])
    response = admin_client.post(url)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert b"The database is busy" in response.content
    assert f'href="{url}">Try again'.encode() in response.content
    assert calls == [[run.pk]]
    assert Run.objects.filter(pk=run.pk).exists()
    _locked_once(monkeypatch)
    page = run.get_absolute_url()
    htmx = admin_client.post(
        url, headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver{page}"}
    )
    assert htmx.status_code == 503
    assert htmx["HX-Retarget"] == "#flash"
    assert b"The database is busy" in htmx.content
    # Try again: the page the button was on, not a GET of the delete's URL.
    assert f'href="{page}">Try again'.encode() in htmx.content
    assert Run.objects.filter(pk=run.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_prune_and_a_writer_locking_runs_in_the_other_order_both_finish(runs_db):
    """A real deadlock, on PostgreSQL: another transaction holds the last run's row and
    then asks for the first's, while prune holds the first and waits for the last.
    PostgreSQL fails one of them; prune, failed, tries its batch again once the other
    has committed (the other, failed, is reported by the test: it is not prune)."""
    if connection.vendor != "postgresql":
        pytest.skip("two writers at once: PostgreSQL (SQLite has one writer)")
    ingest_paths([runs_db])
    runs = list(Run.objects.order_by("pk").values_list("pk", flat=True))
    first, last = runs[0], runs[-1]
    Run.objects.update(left_source_at=timezone.now())
    holding, errors = threading.Event(), []

    def other_writer():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL deadlock_timeout = '10s'")  # prune detects it
                cursor.execute("SELECT id FROM traces_run WHERE id = %s FOR UPDATE", [last])
                holding.set()
                assert until_one_waits_on_a_lock(cursor)
                cursor.execute("SELECT id FROM traces_run WHERE id = %s FOR UPDATE", [first])
                cursor.execute("UPDATE traces_run SET name = 'touched' WHERE id = %s", [first])
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert holding.wait(10)
    out = _prune_logging()
    thread.join(30)
    assert errors == [] and not thread.is_alive()
    assert "met another writer" in out  # prune was the victim, and tried again
    assert not Run.objects.exists()
    all_exact()


def _prune_logging() -> str:
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(batches.__name__)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        call_command("prune", "--left-source", stdout=io.StringIO())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return stream.getvalue()
