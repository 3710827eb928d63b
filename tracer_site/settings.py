"""tracer_site settings. Everything a deployment changes comes from the environment
(see the configuration table in the README); the defaults run a fresh checkout."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected 1/0, true/false, yes/no or on/off")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a whole number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_paths(name: str, default: list[Path]) -> list[Path]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [Path(item).expanduser().resolve() for item in raw.split(os.pathsep) if item.strip()]


DEBUG = env_bool("TRACER_DEBUG", True)
DATA_DIR = Path(env_str("TRACER_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("TRACER_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("TRACER_SECRET_KEY must be set when TRACER_DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-for-local-use"

ALLOWED_HOSTS = env_list("TRACER_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("TRACER_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_tasks",
    "django_tasks_db",
    "ninja",
    "traces",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before the session's: the page answered for an error raised in a middleware
    # after them (the session's save: traces/middleware.py) knows an htmx request
    # and comes back through them, with their headers.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "traces.middleware.DatabaseBusyMiddleware",
]

ROOT_URLCONF = "tracer_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "traces.access.abilities",
            ],
        },
    },
]

WSGI_APPLICATION = "tracer_site.wsgi.application"


def _database() -> dict:
    default_url = f"sqlite:///{DATA_DIR / 'tracer.sqlite3'}"
    config = dj_database_url.parse(env_str("DATABASE_URL", default_url), conn_max_age=60)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets pages read while an ingest writes; IMMEDIATE takes the write
        # lock at BEGIN so two writers queue instead of failing half-way.
        config["CONN_MAX_AGE"] = 0
        # A file, not memory, so a worker process started by a test sees the test data.
        # One per test run (pid), so two runs at once never share it.
        config["TEST"] = {"NAME": str(DATA_DIR / f"test-tracer-{os.getpid()}.sqlite3")}
        config["OPTIONS"] = {
            "timeout": env_int("TRACER_SQLITE_TIMEOUT", 30),
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                "PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY; PRAGMA mmap_size=268435456;"
            ),
        }
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # No JIT: the pages' queries take milliseconds, and compiling one whose row
        # estimate crosses jit_above_cost took 1-3 s of CPU at 1 M steps (RESULTS §15d).
        options = config.setdefault("OPTIONS", {})
        options["options"] = f"{options.get('options', '')} -c jit=off".strip()
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TRACER_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request while it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

LOGIN_URL = "admin:login"

# Content-Security-Policy: no inline script or style anywhere, so a trace
# that smuggles markup in can never run or restyle anything.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("TRACER_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("TRACER_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("TRACER_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("TRACER_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Background ingestion (uploads, rescans) through Django's task API: queued in the
# database, run by `python manage.py db_worker` (any number of workers, on any
# machine sharing the database). TRACER_INGEST_IN_BACKGROUND=0 runs them inline.
TRACER_INGEST_IN_BACKGROUND = env_bool("TRACER_INGEST_IN_BACKGROUND", True)
# A job of this many files or more is shared: helper tasks let other db_workers read part.
TRACER_INGEST_SHARE_FROM = env_int("TRACER_INGEST_SHARE_FROM", 200)
TASKS = {
    "default": {
        "BACKEND": (
            "django_tasks_db.DatabaseBackend"
            if TRACER_INGEST_IN_BACKGROUND
            else "django_tasks.backends.immediate.ImmediateBackend"
        ),
        "QUEUES": ["default", "ingest"],
    }
}

# --- tracer_site's own settings -------------------------------------------------------

# A run still "running" whose source has not changed for this long is shown as stale.
TRACER_STALE_AFTER = timedelta(seconds=env_int("TRACER_STALE_AFTER_SECONDS", 600))
# Where uploaded trace files are kept (they are re-read when re-ingested).
TRACER_UPLOAD_DIR = DATA_DIR / "uploads"
# Largest upload accepted, in bytes (a zip counts as a whole).
TRACER_MAX_UPLOAD_BYTES = env_int("TRACER_MAX_UPLOAD_BYTES", 512 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Directories (and databases) the site may be pointed at from /sources/.
TRACER_SOURCE_ROOTS = env_paths("TRACER_SOURCE_ROOTS", [BASE_DIR / "samples", DATA_DIR / "traces"])
# Read access: open to anyone who can reach the site (local use), or login required
# (deployment): then every page but the admin's login sends anonymous visitors to it.
# The JSON API under /api/ keeps its own rules (traces/access.py exempts it).
TRACER_LOGIN_REQUIRED = env_bool("TRACER_LOGIN_REQUIRED", False)
if TRACER_LOGIN_REQUIRED:
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
        "traces.access.LoginRequiredMiddleware",
    )
# Writes (upload, sources, deleting runs) need a model permission unless this is on
# (local use: `make run` sets it). Off by default: a deployment is closed unless opened.
TRACER_OPEN_WRITES = env_bool("TRACER_OPEN_WRITES", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("TRACER_LOG_LEVEL", "WARNING")},
}
