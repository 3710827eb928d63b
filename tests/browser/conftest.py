"""Browser tests: Playwright for Python driving Debian's chromium against the
live test server on loopback. `make test` installs chromium when missing."""

import os
import shutil

import pytest

# Playwright's sync API runs an event loop in this thread; the database calls
# the tests make themselves (fixtures) are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: run `make browser-deps` (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh page; any console error or CSP violation fails the test."""
    yield from watched_page(browser, live_server, {"width": 1400, "height": 900})


PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser, live_server):
    """A fresh page the size of a phone (390 x 844), watched as `page` is."""
    yield from watched_page(browser, live_server, PHONE)


def assert_no_sideways_scroll(page) -> None:
    """The page is no wider than its window."""
    width = page.evaluate("document.scrollingElement.scrollWidth")
    client = page.evaluate("document.scrollingElement.clientWidth")
    assert width <= client, f"the page scrolls sideways: {width} > {client}"


def background_is_dark(page) -> bool:
    """The body is painted dark (each of its colour's channels below 100)."""
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in background[background.index("(") + 1 : -1].split(",")[:3]]
    return max(channels) < 100


def watched_page(browser, live_server, viewport: dict, expected=lambda text: False):
    """A fixture's page at `viewport`; any console error or CSP violation fails the
    test, but those `expected(text)` says the test provokes."""
    context = browser.new_context(base_url=live_server.url, viewport=viewport)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.set_default_timeout(10_000)
    yield page
    context.close()
    problems = [text for text in problems if not expected(text)]
    assert problems == [], f"browser console errors: {problems}"


@pytest.fixture
def loaded_samples(transactional_db, samples):
    from traces.ingest.loader import ingest_paths

    report = ingest_paths([samples])
    assert report.failed == []
    return report
