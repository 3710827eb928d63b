"""Who may read and change what: TRACER_LOGIN_REQUIRED, TRACER_OPEN_WRITES and the
permissions on upload, sources and deletions; CSRF on every form and htmx request;
the Content-Security-Policy on every page; secure cookies and headers in production."""

import os
import re
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import Resolver404, resolve, reverse

from traces.ingest.loader import ingest_paths
from traces.models import Call, EntityLink, IngestJob, LogEntry, Run, Step, TraceFile, TraceSource

ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/admin/login/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def closed(settings):
    """Deployment defaults: writes need a permission."""
    settings.TRACER_OPEN_WRITES = False
    return settings


@pytest.fixture
def login_required(closed):
    closed.TRACER_LOGIN_REQUIRED = True
    auth = "django.contrib.auth.middleware.AuthenticationMiddleware"
    middleware = list(closed.MIDDLEWARE)
    middleware.insert(middleware.index(auth) + 1, "traces.access.LoginRequiredMiddleware")
    closed.MIDDLEWARE = middleware
    return closed


@pytest.fixture
def loaded(samples):
    report = ingest_paths([samples])
    assert report.failed == []
    return report


@pytest.fixture
def one_run(samples) -> Run:
    ingest_paths([samples / "greentic/02-node-error/trace.json"])
    return Run.objects.get()


@pytest.fixture
def source(settings, samples) -> TraceSource:
    settings.TRACER_SOURCE_ROOTS = [samples]
    return TraceSource.objects.create(path=str(samples / "greentic"))


def user_client(django_user_model, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(f"user{secrets.token_hex(4)}", password="pw")
    perms = Permission.objects.filter(content_type__app_label="traces", codename__in=codenames)
    assert perms.count() == len(codenames)
    user.user_permissions.add(*perms)
    client = Client()
    client.force_login(user)
    return client


# --- the settings ---------------------------------------------------------------------------


def settings_in_subprocess(tmp_path, code: str, **env) -> str:
    environment = dict(os.environ, TRACER_DATA_DIR=str(tmp_path), **env)
    for name in ("TRACER_LOGIN_REQUIRED", "TRACER_OPEN_WRITES"):
        if name not in env:
            environment.pop(name, None)
    script = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
        f"'tracer_site.settings'); django.setup(); from django.conf import settings; {code}"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_by_default_reads_are_open_and_writes_need_a_permission(tmp_path):
    out = settings_in_subprocess(
        tmp_path,
        "print(settings.TRACER_LOGIN_REQUIRED, settings.TRACER_OPEN_WRITES, "
        "'traces.access.LoginRequiredMiddleware' in settings.MIDDLEWARE)",
    )
    assert out.split() == ["False", "False", "False"]


def test_login_required_adds_the_middleware_after_authentication(tmp_path):
    out = settings_in_subprocess(
        tmp_path, "print('|'.join(settings.MIDDLEWARE))", TRACER_LOGIN_REQUIRED="1"
    )
    middleware = out.strip().split("|")
    auth = middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware")
    assert middleware[auth + 1] == "traces.access.LoginRequiredMiddleware"


def test_open_writes_comes_from_the_environment(tmp_path):
    out = settings_in_subprocess(
        tmp_path, "print(settings.TRACER_OPEN_WRITES)", TRACER_OPEN_WRITES="1"
    )
    assert out.strip() == "True"


# --- reading --------------------------------------------------------------------------------

READ_PAGES = ["traces:run-list", "traces:step-list", "traces:entity-list", "traces:file-list"]


@pytest.mark.parametrize("name", READ_PAGES)
def test_reading_is_open_by_default(client, closed, name):
    assert client.get(reverse(name)).status_code == 200


@pytest.mark.parametrize("name", [*READ_PAGES, "traces:source-list"])
def test_login_required_sends_anonymous_visitors_to_the_admin_login(client, login_required, name):
    url = reverse(name)
    response = client.get(url, {"q": "x"} if name == "traces:run-list" else {})
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(LOGIN + "?next=") and url in location


def test_login_required_pages_of_one_run_too(client, login_required, one_run):
    for url in (one_run.get_absolute_url(), reverse("traces:run-logs", args=[one_run.pk])):
        assert client.get(url).status_code == 302


def test_login_required_htmx_requests_get_a_full_page_redirect(client, login_required, one_run):
    response = client.get(one_run.get_absolute_url(), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith(LOGIN + "?next=")


def test_login_required_still_serves_the_login_page_and_static_files(client, login_required):
    login_required.WHITENOISE_USE_FINDERS = True
    login_required.WHITENOISE_AUTOREFRESH = True
    assert client.get(LOGIN).status_code == 200
    static = client.get("/static/traces/app.css")
    assert static.status_code == 200 and "text/css" in static["Content-Type"]


def test_login_required_leaves_the_api_to_its_own_rules(client, login_required):
    try:
        match = resolve("/api/runs")
    except Resolver404:
        pytest.skip("no JSON API mounted at /api/ in this checkout")
    assert "api" in match.namespaces
    response = client.get("/api/runs")
    assert response.status_code != 302
    assert response["Content-Type"].startswith("application/json")


def test_a_logged_in_user_reads_everything(login_required, django_user_model, one_run):
    client = user_client(django_user_model)
    assert client.get(reverse("traces:run-list")).status_code == 200
    assert client.get(one_run.get_absolute_url()).status_code == 200


def test_the_admin_login_logs_in_and_comes_back(client, login_required, django_user_model):
    login_required.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    django_user_model.objects.create_user("ann", password="a long pass phrase", is_staff=False)
    client.get(LOGIN)
    response = client.post(
        LOGIN + "?next=/files/",
        {"username": "ann", "password": "a long pass phrase", "next": "/files/"},
    )
    # The admin's login only lets staff in; a non-staff account is refused with a message.
    assert response.status_code == 200 and "staff" in response.content.decode()
    django_user_model.objects.filter(username="ann").update(is_staff=True)
    response = client.post(
        LOGIN, {"username": "ann", "password": "a long pass phrase", "next": "/files/"}
    )
    assert response.status_code == 302 and response["Location"] == "/files/"
    assert client.get("/files/").status_code == 200


# --- writing --------------------------------------------------------------------------------


def write_requests(run: Run, source: TraceSource, samples: Path) -> list:
    """(permission codename, method, url, data) of every action that changes something."""
    upload = samples / "greentic/01-success-always/trace.json"
    return [
        ("add_tracefile", "get", reverse("traces:upload"), None),
        ("add_tracefile", "post", reverse("traces:upload"), {"files": [upload]}),
        ("add_tracesource", "post", reverse("traces:source-list"), {"path": str(samples)}),
        ("change_tracesource", "post", source.get_absolute_url(), {"label": "x", "every": ""}),
        ("change_tracesource", "post", reverse("traces:source-rescan", args=[source.pk]), {}),
        ("delete_tracesource", "get", reverse("traces:source-delete", args=[source.pk]), None),
        ("delete_tracesource", "post", reverse("traces:source-delete", args=[source.pk]), {}),
        ("delete_run", "get", reverse("traces:run-delete", args=[run.pk]), None),
        ("delete_run", "post", reverse("traces:run-delete", args=[run.pk]), {}),
    ]


def send(client: Client, method: str, url: str, data, **extra):
    if method == "get":
        return client.get(url, **extra)
    if data and "files" in data:
        with open(data["files"][0], "rb") as handle:
            return client.post(url, {"files": [handle]}, **extra)
    return client.post(url, data or {}, **extra)


def test_anonymous_writes_are_sent_to_the_login_page(client, closed, one_run, source, samples):
    for _codename, method, url, data in write_requests(one_run, source, samples):
        response = send(client, method, url, data, HTTP_REFERER="http://testserver/sources/")
        assert response.status_code == 302, url
        location = response["Location"]
        assert location.startswith(LOGIN + "?next="), url
        # After logging in: back to the page (for a form, the page the form was on).
        back = quote("/sources/" if method == "post" else url, safe="/")
        assert location == f"{LOGIN}?next={back}", url
    assert TraceSource.objects.get().label == "" and Run.objects.count() == 1
    assert not TraceFile.objects.filter(uploaded=True).exists()


def test_a_user_without_the_permission_gets_a_403_naming_it(
    closed, django_user_model, one_run, source, samples
):
    client = user_client(django_user_model)
    for codename, method, url, data in write_requests(one_run, source, samples):
        response = send(client, method, url, data)
        assert response.status_code == 403, url
        page = response.content.decode()
        assert f"traces.{codename}" in page and "You may not do that here" in page, url
    assert TraceSource.objects.get().label == "" and Run.objects.count() == 1


def test_the_403_for_htmx_goes_to_the_flash_area(closed, django_user_model, source):
    client = user_client(django_user_model)
    url = reverse("traces:source-rescan", args=[source.pk])
    response = client.post(url, headers={"HX-Request": "true"})
    assert response.status_code == 403
    assert response["HX-Retarget"] == "#flash" and "<html" not in response.content.decode()
    assert "traces.change_tracesource" in response.content.decode()


def test_anonymous_htmx_write_gets_a_full_page_redirect(client, closed, source):
    url = reverse("traces:source-rescan", args=[source.pk])
    response = client.post(url, headers={"HX-Request": "true", "Referer": "http://testserver/"})
    assert response["HX-Redirect"].startswith(LOGIN + "?next=")


def test_a_referer_from_elsewhere_is_not_where_login_returns(client, closed, source):
    url = reverse("traces:source-rescan", args=[source.pk])
    response = client.post(url, HTTP_REFERER="https://evil.example/phish")
    assert "evil" not in response["Location"]


@pytest.mark.parametrize(
    "codename, index",
    [
        ("add_tracefile", 1),
        ("add_tracesource", 2),
        ("change_tracesource", 3),
        ("change_tracesource", 4),
        ("delete_tracesource", 6),
        ("delete_run", 8),
    ],
)
def test_a_user_with_the_permission_may(
    closed, django_user_model, one_run, source, samples, codename, index
):
    client = user_client(django_user_model, codename)
    _codename, method, url, data = write_requests(one_run, source, samples)[index]
    assert _codename == codename
    response = send(client, method, url, data)
    # Upload answers with its results page; the others redirect to what they changed.
    assert response.status_code == (200 if codename == "add_tracefile" else 302)
    assert "You may not do that here" not in response.content.decode()


def test_open_writes_let_anyone_change(client, settings, one_run, source):
    settings.TRACER_OPEN_WRITES = True
    response = client.post(reverse("traces:run-delete", args=[one_run.pk]))
    assert response.status_code == 302 and not Run.objects.exists()


# --- deleting -------------------------------------------------------------------------------


def test_deleting_a_run_removes_it_and_everything_under_it_only(client, loaded):
    run = Run.objects.filter(step_count__gt=0, call_count__gt=0).first()
    other_steps = Step.objects.exclude(run=run).count()
    page = client.get(reverse("traces:run-delete", args=[run.pk])).content.decode()
    assert "Delete this run?" in page and "csrfmiddlewaretoken" in page
    response = client.post(reverse("traces:run-delete", args=[run.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("traces:run-list")
    assert not Run.objects.filter(pk=run.pk).exists()
    for model in (Step, Call, EntityLink, LogEntry):
        assert not model.objects.filter(run_id=run.pk).exists()
    assert Step.objects.count() == other_steps
    assert client.get(run.get_absolute_url()).status_code == 404


def test_deleting_a_run_with_htmx_redirects_the_whole_page(client, one_run):
    url = reverse("traces:run-delete", args=[one_run.pk])
    response = client.post(url, headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == reverse("traces:run-list")


def test_deleting_needs_post_or_get(client, one_run):
    assert client.delete(reverse("traces:run-delete", args=[one_run.pk])).status_code == 405
    assert client.post(reverse("traces:run-delete", args=[999999])).status_code == 404


def test_the_run_header_offers_delete_only_with_the_permission(
    client, closed, django_user_model, one_run
):
    delete_url = reverse("traces:run-delete", args=[one_run.pk])
    assert delete_url not in client.get(one_run.get_absolute_url()).content.decode()
    without = user_client(django_user_model)
    assert delete_url not in without.get(one_run.get_absolute_url()).content.decode()
    allowed = user_client(django_user_model, "delete_run")
    assert delete_url in allowed.get(one_run.get_absolute_url()).content.decode()


def test_deleting_a_source_keeps_its_runs_unless_asked(client, source):
    client.post(reverse("traces:source-rescan", args=[source.pk]))
    runs = Run.objects.count()
    assert runs == 4
    page = client.get(reverse("traces:source-delete", args=[source.pk])).content.decode()
    assert "4 runs from 4 files" in page
    response = client.post(reverse("traces:source-delete", args=[source.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("traces:source-list")
    assert not TraceSource.objects.exists() and Run.objects.count() == runs
    assert TraceFile.objects.filter(source=None).count() == 4


def test_deleting_a_source_with_its_runs_forgets_its_files_so_re_adding_reads_them(
    client, source, samples
):
    client.post(reverse("traces:source-rescan", args=[source.pk]))
    ingest_paths([samples / "traceos/traces.jsonl"])  # not from the source: stays
    url = reverse("traces:source-delete", args=[source.pk])
    client.post(url, {"delete_runs": "on"})
    assert not TraceSource.objects.exists() and not IngestJob.objects.exists()
    assert set(Run.objects.values_list("format", flat=True)) == {"traceos"}
    assert TraceFile.objects.count() == 1
    client.post(reverse("traces:source-list"), {"path": source.path, "scan_now": "on"})
    assert Run.objects.filter(format="greentic").count() == 4


# --- CSRF -----------------------------------------------------------------------------------


class Forms(HTMLParser):
    """Every <form>: its method, and whether it carries the CSRF token."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self.hx_headers: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "hx-headers" in attrs:
            self.hx_headers.append(attrs["hx-headers"])
        if tag == "form":
            method = (attrs.get("method") or "get").lower()
            hx_post = "hx-post" in attrs
            self.forms.append({"method": method, "hx_post": hx_post, "token": False, **attrs})
        elif tag == "input" and attrs.get("name") == "csrfmiddlewaretoken" and self.forms:
            self.forms[-1]["token"] = bool(attrs.get("value"))


def page_urls(run: Run, source: TraceSource) -> list[str]:
    step = run.steps.order_by("seq").first()
    link = EntityLink.objects.first()
    urls = [
        reverse("traces:run-list"),
        run.get_absolute_url(),
        *(f"{run.get_absolute_url()}?tab={tab}" for tab in ("timeline", "logs", "io")),
        step.get_absolute_url(),
        reverse("traces:step-list") + "?status=failed",
        reverse("traces:entity-list"),
        reverse("traces:file-list"),
        TraceFile.objects.first().get_absolute_url(),
        reverse("traces:source-list"),
        source.get_absolute_url(),
        reverse("traces:source-delete", args=[source.pk]),
        reverse("traces:run-delete", args=[run.pk]),
        reverse("traces:upload"),
    ]
    if link is not None:
        urls.append(reverse("traces:entity-detail", args=[link.entity_type, link.entity_id]))
    return urls


@pytest.fixture
def every_page(loaded, source):
    run = Run.objects.filter(format="runs", link_count__gt=0).first()
    return page_urls(run, source)


def test_every_post_form_on_every_page_carries_the_csrf_token(client, every_page):
    seen = 0
    for url in every_page:
        response = client.get(url)
        assert response.status_code == 200, url
        parser = Forms()
        parser.feed(response.content.decode())
        for form in parser.forms:
            if form["method"] == "post" or form["hx_post"]:
                seen += 1
                assert form["token"], f"a POST form without the CSRF token on {url}: {form}"
    assert seen >= 6


def test_htmx_requests_carry_the_token_in_hx_headers_and_fail_without_it(source):
    client = Client(enforce_csrf_checks=True)
    parser = Forms()
    parser.feed(client.get(reverse("traces:source-list")).content.decode())
    (headers,) = parser.hx_headers
    token = re.fullmatch(r'\{"X-CSRFToken": "([^"]+)"\}', headers).group(1)
    url = reverse("traces:source-rescan", args=[source.pk])
    without = client.post(url, headers={"HX-Request": "true"})
    assert without.status_code == 403
    assert not TraceSource.objects.get().last_scan_finished_at
    with_token = client.post(url, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert with_token.status_code == 200
    assert TraceSource.objects.get().last_scan_finished_at


@pytest.mark.parametrize("name", ["run-delete", "source-delete"])
def test_deleting_needs_the_csrf_token(one_run, source, name):
    client = Client(enforce_csrf_checks=True)
    target = one_run.pk if name == "run-delete" else source.pk
    assert client.post(reverse(f"traces:{name}", args=[target])).status_code == 403
    assert Run.objects.exists() and TraceSource.objects.exists()


# --- headers --------------------------------------------------------------------------------


def test_every_page_has_a_strict_content_security_policy(client, every_page):
    for url in [*every_page, reverse("traces:run-list") + "?status=nonsense"]:
        response = client.get(url)
        policy = response["Content-Security-Policy"]
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, url
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"


PRODUCTION_CHECK = """
from django.test import Client
from django.core.management import call_command
call_command("migrate", verbosity=0)
# Pages name static files through the manifest, which is not collected here (slow,
# and tests/test_deploy.py covers it): plain names instead, before anything uses them.
settings.STORAGES = {**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY",
             "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
             "SECURE_CONTENT_TYPE_NOSNIFF", "X_FRAME_OPTIONS", "SECURE_REFERRER_POLICY",
             "SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SAMESITE", "DEBUG"):
    print(name, getattr(settings, name))
client = Client(HTTP_HOST="traces.example.com")
print("plain", client.get("/sources/").status_code, client.get("/sources/")["Location"])
response = client.get("/sources/", secure=True)
print("status", response.status_code)
for header in ("Strict-Transport-Security", "Content-Security-Policy", "X-Frame-Options",
               "X-Content-Type-Options", "Referrer-Policy"):
    print("header", header, "=", response.get(header))
print("cookie", response.cookies["csrftoken"].output())
"""


def test_production_settings_secure_cookies_and_headers(tmp_path):
    out = settings_in_subprocess(
        tmp_path,
        PRODUCTION_CHECK,
        TRACER_DEBUG="0",
        TRACER_SECRET_KEY=secrets.token_urlsafe(64),
        TRACER_ALLOWED_HOSTS="traces.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
    )
    values = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    for name in (
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_CONTENT_TYPE_NOSNIFF",
    ):
        assert values[name] == "True", name
    assert values["DEBUG"] == "False" and int(values["SECURE_HSTS_SECONDS"]) >= 31536000
    assert values["X_FRAME_OPTIONS"] == "DENY" and values["SECURE_REFERRER_POLICY"] == "same-origin"
    assert values["plain"] == "301 https://traces.example.com/sources/"
    assert values["status"] == "200"
    assert "Strict-Transport-Security = max-age=31536000; includeSubDomains; preload" in out
    assert "X-Frame-Options = DENY" in out and "X-Content-Type-Options = nosniff" in out
    assert "unsafe-inline" not in out
    cookie = values["cookie"]
    assert "Secure" in cookie and "SameSite=Lax" in cookie


@pytest.mark.django_db
def test_source_page_hides_write_forms_from_users_who_cannot_use_them(client, settings):
    settings.TRACER_OPEN_WRITES = False
    html = client.get(reverse("traces:source-list")).content.decode()
    assert 'id="add-source"' not in html
    settings.TRACER_OPEN_WRITES = True
    html = client.get(reverse("traces:source-list")).content.decode()
    assert 'id="add-source"' in html
