"""The production settings: `check --deploy` clean, compressed manifest static files."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_manage(tmp_path, *args):
    env = dict(
        os.environ,
        TRACER_DEBUG="0",
        TRACER_SECRET_KEY=secrets.token_urlsafe(64),
        TRACER_DATA_DIR=str(tmp_path),
        TRACER_ALLOWED_HOSTS="traces.example.com",
    )
    env.pop("DATABASE_URL", None)
    # The browser tests' async-unsafe switch must not reach a production check.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = run_manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_static_files_are_collected_compressed_with_a_manifest(tmp_path):
    result = run_manage(tmp_path, "collectstatic", "--noinput")
    assert result.returncode == 0, result.stderr
    static = tmp_path / "staticfiles"
    assert (static / "staticfiles.json").exists()
    assert list(static.glob("vendor/htmx.min.*.js.gz"))
    assert list(static.glob("ninja/swagger-ui-bundle.*.js.gz"))  # the API docs' files


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = dict(os.environ, TRACER_DEBUG="0", TRACER_DATA_DIR=str(tmp_path))
    env.pop("TRACER_SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0 and "TRACER_SECRET_KEY" in result.stderr
