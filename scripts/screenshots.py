#!/usr/bin/env python3
"""Regenerate the README's screenshots: `make screenshots` (or some of them by name:
`scripts/screenshots.py critical-path timeline`).

Ingests the samples into a throwaway database, serves the site on loopback,
and has Debian's chromium (through Playwright) photograph the main pages into
docs/screenshots/, in light and dark.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
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
    # The parallel run's timeline zoomed in once, a step open in the panel beside it.
    page.goto(f"{base}{parallel_url}?tab=timeline")
    page.goto(base + page.locator("a[data-zoom='in']").get_attribute("href"))
    zoom_step_url = page.locator("li.timeline-row [data-row-link]").nth(1).get_attribute("href")
    return [
        ("runs", f"{base}/"),
        ("run", f"{base}{step_url}"),
        ("timeline", f"{base}{parallel_url}?tab=timeline"),
        ("timeline-zoom", f"{base}{zoom_step_url}"),
        ("critical-path", f"{base}{parallel_url}?tab=critical"),
        ("failed-steps", f"{base}/steps/?status=failed"),
        ("entities", f"{base}/entities/"),
        ("compare", f"{base}{compare_url}"),
        ("search", f"{base}/search/?q=sync_stripe&jump=no"),
        ("logs", f"{base}/logs/?q=step+completed"),
        ("upload", f"{base}/upload/"),
    ]


def shoot(base: str, only: set[str]) -> None:
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
            for name, url in pages(page, base):
                if only and name not in only:
                    continue
                page.goto(url)
                page.wait_for_load_state("networkidle")
                suffix = "" if scheme == "light" else "-dark"
                page.screenshot(path=str(OUT / f"{name}{suffix}.png"))
                print(f"docs/screenshots/{name}{suffix}.png  {url}")
            context.close()
        browser.close()


def main() -> None:
    data = tempfile.mkdtemp(prefix="tracer-shots-")
    env = dict(os.environ, TRACER_DATA_DIR=data, TRACER_INGEST_IN_BACKGROUND="0")
    env.pop("DATABASE_URL", None)
    manage(env, "migrate", "--noinput", stdout=subprocess.DEVNULL)
    manage(env, "ingest", "samples", stdout=subprocess.DEVNULL)
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
        shoot(base, set(sys.argv[1:]))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
