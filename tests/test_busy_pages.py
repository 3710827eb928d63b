"""A database too busy to write answers 503 with the busy page (traces/middleware.py)
also when the write is not the view's: the session saved after the view by
SessionMiddleware, or any middleware's query. Django turns such an error into a
response around each middleware (Django's session backend, a failed save into a 400):
the URLconf's handler400/handler500 give the busy page instead, and any other error
its page as before."""

import contextlib

import psycopg.errors
import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import OperationalError, connection, connections
from django.test import Client
from django.urls import reverse

from traces import middleware

BUSY = b"The database is busy: another write held it too long."
PAGE = "/?status=failed"


@pytest.fixture
def logged_in(django_user_model, settings) -> Client:
    """A user's client whose every request saves its session (a deployment may ask
    for that: SESSION_SAVE_EVERY_REQUEST), as a real server answers: no exception
    raised into the test."""
    settings.SESSION_SAVE_EVERY_REQUEST = True
    client = Client(raise_request_exception=False)
    client.force_login(django_user_model.objects.create_user("reader", password="pw"))
    return client


@pytest.fixture
def short_waits(monkeypatch):
    """The request's connection waits 0.2 s for a lock, not SQLite's 30 s busy timeout
    (PostgreSQL waits forever unless told: a deployment's lock_timeout)."""
    options = connection.settings_dict["OPTIONS"]
    if connection.vendor == "sqlite":
        monkeypatch.setitem(options, "timeout", 0.2)
    else:
        monkeypatch.setitem(options, "options", f"{options.get('options', '')} -c lock_timeout=200")
    connection.close()  # the next query connects with these
    yield
    connection.close()


@contextlib.contextmanager
def another_writer():
    """Another connection holds what a request writes, reads left free: SQLite's write
    lock; on PostgreSQL, the session and user tables locked against writes."""
    other = connections.create_connection("default")
    with other.cursor() as cursor:
        if other.vendor == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        else:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE django_session, auth_user IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            cursor.execute("ROLLBACK")
    other.close()


def driver_error(error_class: type[psycopg.Error]) -> OperationalError:
    """PostgreSQL's error as Django raises it: an OperationalError from the driver's."""
    driver = error_class(f"{error_class.__name__} (simulated)")
    try:
        raise OperationalError(*driver.args) from driver
    except OperationalError as error:
        return error


def assert_busy_page(response, try_again: str) -> None:
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert BUSY in response.content
    assert f'href="{try_again}">Try again'.encode() in response.content
    # It came back through the middleware that gives every page these.
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db(transaction=True)
def test_a_session_save_that_waited_for_another_writer_is_the_busy_page(logged_in, short_waits):
    with another_writer():
        response = logged_in.get(PAGE)
        assert "<!doctype html>" in response.content.decode().lower()
        assert_busy_page(response, PAGE)
        assert "sessionid" not in response.cookies  # not saved
    response = logged_in.get(PAGE)
    assert response.status_code == 200
    assert response.cookies["sessionid"].value  # saved, once the other writer is gone


@pytest.mark.django_db(transaction=True)
def test_an_htmx_request_whose_session_save_waited_gets_the_busy_message_in_the_flash_area(
    logged_in, short_waits
):
    with another_writer():
        response = logged_in.get(
            "/?page=2",
            headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver{PAGE}"},
        )
    assert_busy_page(response, PAGE)  # try the page again, not its fragment's URL
    assert response["HX-Retarget"] == "#flash" and response["HX-Reswap"] == "innerHTML"
    assert "<!doctype html>" not in response.content.decode().lower()


@pytest.mark.django_db(transaction=True)
def test_logging_in_while_another_writer_holds_the_database_is_the_busy_page(
    client, django_user_model, short_waits
):
    user = django_user_model.objects.create_user("reader", password="pw", is_staff=True)
    url = reverse("admin:login")
    with another_writer():
        response = client.post(url, {"username": "reader", "password": "pw"})
    assert_busy_page(response, url)
    user.refresh_from_db()
    assert user.last_login is None and not Session.objects.exists()
    response = client.post(url, {"username": "reader", "password": "pw"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.last_login is not None


BUSY_ERRORS = [
    psycopg.errors.DeadlockDetected,  # 40P01
    psycopg.errors.SerializationFailure,  # 40001
    psycopg.errors.LockNotAvailable,  # 55P03: lock_timeout
]


def _failing_session_row(monkeypatch, error: OperationalError) -> None:
    """The session row's write fails: Django's session backend raises UpdateError from
    it, and SessionMiddleware SessionInterrupted (a 400) from that."""

    def save(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(Session, "save", save)


def _failing_middleware(monkeypatch, error: Exception) -> None:
    """The error leaves a middleware as it is (SessionMiddleware saving the session)."""

    def save(self, must_create=False):
        raise error

    monkeypatch.setattr(SessionStore, "save", save)


@pytest.mark.django_db
@pytest.mark.parametrize("fail", [_failing_session_row, _failing_middleware])
@pytest.mark.parametrize("error_class", BUSY_ERRORS, ids=lambda cls: cls.sqlstate)
def test_postgresqls_errors_of_another_writer_outside_the_view_are_the_busy_page(
    logged_in, monkeypatch, fail, error_class
):
    fail(monkeypatch, driver_error(error_class))
    assert_busy_page(logged_in.get(PAGE), PAGE)


@pytest.mark.django_db
def test_a_database_error_that_is_not_a_busy_one_stays_what_it_was(logged_in, monkeypatch):
    # statement_timeout (57014): the query's own slowness, not another writer.
    _failing_session_row(monkeypatch, driver_error(psycopg.errors.QueryCanceled))
    response = logged_in.get(PAGE)
    assert response.status_code == 400 and BUSY not in response.content
    _failing_middleware(monkeypatch, driver_error(psycopg.errors.QueryCanceled))
    response = logged_in.get(PAGE)
    assert response.status_code == 500 and BUSY not in response.content
    _failing_middleware(monkeypatch, OperationalError("disk I/O error"))
    assert logged_in.get(PAGE).status_code == 500


@pytest.mark.django_db
def test_a_bug_outside_the_view_is_still_a_500(logged_in, monkeypatch):
    _failing_middleware(monkeypatch, RuntimeError("a bug"))
    response = logged_in.get(PAGE)
    assert response.status_code == 500
    assert b"Server Error (500)" in response.content and BUSY not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("fail", [_failing_session_row, _failing_middleware])
def test_a_busy_page_that_cannot_be_drawn_is_djangos_500(logged_in, monkeypatch, fail):
    """The busy page reads the user for the layout: a database too busy for that too
    gets Django's plain page, not an error raised from the error handler."""
    fail(monkeypatch, driver_error(psycopg.errors.DeadlockDetected))

    def unreadable(*args, **kwargs):
        raise driver_error(psycopg.errors.LockNotAvailable)

    monkeypatch.setattr(middleware, "bad_request", unreadable)
    response = logged_in.get(PAGE)
    assert response.status_code == 500
    assert b"Server Error (500)" in response.content


@pytest.mark.parametrize(
    "error, busy",
    [
        (driver_error(psycopg.errors.DeadlockDetected), True),
        (driver_error(psycopg.errors.QueryCanceled), False),
        (RuntimeError("a bug"), False),
    ],
)
def test_busy_error_finds_the_busy_error_an_error_was_raised_while_handling(error, busy):
    assert (middleware.busy_error(error) is error) is busy
    for wrapper in (_raised_while_handling(error), _raised_while_handling(error, cause=True)):
        assert (middleware.busy_error(wrapper) is error) is busy
    # `raise ... from None`: said not to be its cause.
    assert middleware.busy_error(_raised_while_handling(error, cause=None)) is None


def _raised_while_handling(error: Exception, cause=False) -> Exception:
    try:
        try:
            raise error
        except Exception:
            if cause is False:
                raise ValueError("raised while handling it")  # noqa: B904 (as Django's)
            raise ValueError("raised from it") from (error if cause else None)
    except ValueError as wrapper:
        return wrapper


@pytest.mark.django_db
@pytest.mark.parametrize("fail", [_failing_session_row, _failing_middleware])
def test_the_apis_busy_answer_outside_the_view_is_its_json_error(logged_in, monkeypatch, fail):
    """The JSON API answers a busy database as api_errors does in a view, not with the
    HTML page."""
    fail(monkeypatch, driver_error(BUSY_ERRORS[0]))
    response = logged_in.get("/api/runs")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "The database is busy or unavailable; try again."}
