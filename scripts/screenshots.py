#!/usr/bin/env python3
"""Regenerate the README's screenshots: `make screenshots` (or some of them by name:
`scripts/screenshots.py critical-path timeline`).

The trends chart is taken last, after a generated history of 1,200 runs is ingested.

Ingests the samples into a throwaway database, serves the site on loopback,
and has Debian's chromium (through Playwright) photograph the main pages into
docs/screenshots/, in light and dark. The samples' failures are months old: for the
"failing now" strip, a copy of the runs sample with its times moved to the last
hour and a half is ingested too, and a copy of the greentic sample written 20 minutes
ago (its runs' times are the files' times: counted apart in the strip, "+1 ≈"); into
the throwaway database only (samples/ and the demo data are left as they are).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, **kwargs
    )


def wait_for(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"the site did not come up at {url}")


def recent_copy(folder: Path) -> Path:
    """A copy of the runs sample whose newest run started 15 minutes ago (every time
    in it moved by the same amount), so that its failed runs are recent."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "runs-recent.sqlite"
    shutil.copyfile(ROOT / "samples" / "runs" / "runs.sqlite", copy)
    newest_at = datetime.now(UTC) - timedelta(minutes=15)
    conn = sqlite3.connect(copy)
    (newest,) = conn.execute("SELECT MAX(julianday(started_at)) FROM runs").fetchone()
    shift = julianday(newest_at) - newest
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        for column in (name for name in columns if name.endswith("_at")):
            conn.execute(
                f"UPDATE {table} SET {column} = "
                f"strftime('%Y-%m-%dT%H:%M:%fZ', julianday({column}) + ?) "
                f"WHERE {column} IS NOT NULL AND julianday({column}) IS NOT NULL",
                (shift,),
            )
    conn.commit()
    conn.close()
    return copy


def recent_greentic(folder: Path) -> Path:
    """A copy of the greentic sample whose files were written 20 minutes ago: its
    runs' estimated times (the files' times) fall in the strip's last hour."""
    copy = folder / "greentic-recent"
    shutil.copytree(ROOT / "samples" / "greentic", copy)
    written = time.time() - 20 * 60
    for path in copy.rglob("*.json"):
        os.utime(path, (written, written))
    return copy


def julianday(moment: datetime) -> float:
    """A UTC time as SQLite's julianday() gives it."""
    return moment.timestamp() / 86400 + 2440587.5


# A cause of the recent copy's failures (URL-encoded).
RECENT_CAUSE = "canceling+statement+due+to+statement+timeout"
# Pictures of one part of a page: (file name) -> CSS selector.
PARTS = {"failing-now": ".failing-now"}
# Taken whole, below the fold too: the search's three groups (runs, steps, entities).
FULL_PAGE = {"search"}
# Taken on a phone (390 x 844) too, as `<name>-phone`.
PHONE_PAGES = ("runs", "run", "search")


def pages(page, base: str) -> list[tuple[str, str]]:
    """(file name, URL) of each page worth a picture, found from the samples."""
    page.goto(f"{base}/steps/?status=failed&format=runs&name=upsert_batch")
    step_url = page.locator("td.step-name a").first.get_attribute("href")
    page.goto(f"{base}/?format=duckflux&q=Parallel")
    parallel_url = page.locator("td.name a").first.get_attribute("href")
    # The newest failed sync_stripe run beside the run before it.
    page.goto(f"{base}/?format=runs&type=sync_stripe&status=failed")
    page.locator("td.name a").first.click()
    compare_url = page.locator("[data-compare-previous]").get_attribute("href")
    run_url = page.url.removeprefix(base)
    # A trace read from a Collector's file export, with its OTLP / Perfetto buttons.
    page.goto(f"{base}/?format=otlp&status=failed")
    otlp_url = page.locator("td.name a").first.get_attribute("href")
    # The parallel run's timeline zoomed in once, a step open in the panel beside it.
    page.goto(f"{base}{parallel_url}?tab=timeline")
    page.goto(base + page.locator("a[data-zoom='in']").get_attribute("href"))
    zoom_step_url = page.locator("li.timeline-row [data-row-link]").nth(1).get_attribute("href")
    return [
        ("runs", f"{base}/"),
        ("failing-now", f"{base}/"),
        ("run", f"{base}{step_url}"),
        ("timeline", f"{base}{parallel_url}?tab=timeline"),
        ("timeline-zoom", f"{base}{zoom_step_url}"),
        ("critical-path", f"{base}{parallel_url}?tab=critical"),
        ("find", f"{base}{run_url}?find=upsert_batch"),
        ("failed-steps", f"{base}/steps/?status=failed"),
        ("failed-cause", f"{base}/steps/?status=failed&since=24h&error_group={RECENT_CAUSE}"),
        ("entities", f"{base}/entities/"),
        ("compare", f"{base}{compare_url}"),
        ("otlp", f"{base}{otlp_url}?tab=timeline"),
        ("search", f"{base}/search/?q=page&jump=no"),
        ("logs", f"{base}/logs/?q=step+completed"),
        ("upload", f"{base}/upload/"),
    ]


def trend_pages(page, base: str) -> list[tuple[str, str]]:
    """The run type with the most runs (of the generated history, trends_history())."""
    page.goto(f"{base}/api/types")
    types = json.loads(page.locator("body").inner_text())["items"]
    busiest = max(types, key=lambda row: sum(row["counts"].values()))
    return [("trends", f"{base}{busiest['url']}?bucket=hour")]


def trends_history(env: dict, data: str) -> None:
    """A runs database of 1,200 runs, one every 90 s (30 hours): the samples hold
    three runs of a type at most, too few for a chart."""
    path = Path(data) / "history" / "runs.sqlite"
    path.parent.mkdir()
    subprocess.run(
        [sys.executable, "bench/generate_runs_db.py", str(path), "--runs", "1200",
         "--steps", "6000", "--calls", "1200", "--links", "600"],
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    manage(env, "ingest", str(path), stdout=subprocess.DEVNULL)


def shoot(base: str, only: set[str], find=pages) -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
        )
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": 1400, "height": 860}, color_scheme=scheme
            )
            page = context.new_page()
            for name, url in find(page, base):
                if only and name not in only:
                    continue
                page.goto(url)
                page.wait_for_load_state("networkidle")
                suffix = "" if scheme == "light" else "-dark"
                path = str(OUT / f"{name}{suffix}.png")
                if name in PARTS:
                    page.locator(PARTS[name]).screenshot(path=path)
                else:
                    page.screenshot(path=path, full_page=name in FULL_PAGE)
                print(f"docs/screenshots/{name}{suffix}.png  {url}")
            phone_pages = {
                f"{name}-phone": url for name, url in find(page, base) if name in PHONE_PAGES
            }
            context.close()
            shoot_phone(browser, phone_pages, scheme, only)
        browser.close()


def shoot_phone(browser, urls: dict[str, str], scheme: str, only: set[str]) -> None:
    """The runs list, a run and a search as a phone shows them (390 x 844)."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=scheme)
    page = context.new_page()
    for name, url in urls.items():
        if only and name not in only:
            continue
        page.goto(url)
        page.wait_for_load_state("networkidle")
        suffix = "" if scheme == "light" else "-dark"
        page.screenshot(path=str(OUT / f"{name}{suffix}.png"))
        print(f"docs/screenshots/{name}{suffix}.png  {url}")
    context.close()


def main() -> None:
    data = tempfile.mkdtemp(prefix="tracer-shots-")
    env = dict(os.environ, TRACER_DATA_DIR=data, TRACER_INGEST_IN_BACKGROUND="0")
    env.pop("DATABASE_URL", None)
    manage(env, "migrate", "--noinput", stdout=subprocess.DEVNULL)
    manage(env, "ingest", "samples", stdout=subprocess.DEVNULL)
    manage(env, "ingest", str(recent_copy(Path(data) / "recent")), stdout=subprocess.DEVNULL)
    manage(env, "ingest", str(recent_greentic(Path(data) / "recent")), stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/")
        only = set(sys.argv[1:])
        if only != {"trends"}:
            shoot(base, only)
        if not only or "trends" in only:
            # Last: the generated history would crowd the other pictures.
            trends_history(env, data)
            shoot(base, only, find=trend_pages)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
