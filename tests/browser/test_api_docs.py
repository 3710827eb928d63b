"""/api/docs in a real browser: Swagger UI from files the site serves itself (no
network, no inline script under the CSP), and a request tried from it."""

import re
import struct
import zlib


def test_docs_list_every_operation_and_try_one_offline(page, loaded_samples):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/api/docs")
    operations = page.locator(".opblock")
    operations.first.wait_for()
    document = page.request.get("/api/openapi.json").json()
    documented = sum(len(methods) for methods in document["paths"].values())
    assert documented >= 17 and operations.count() == documented
    assert page.get_by_text("/api/entities/{entity_type}/{entity_id}/steps").count() == 1

    runs = page.locator("#operations-runs-traces_api_list_runs")
    runs.locator(".opblock-summary").click()
    runs.get_by_role("button", name="Try it out").click()
    runs.locator("select").first.select_option("failed")
    runs.get_by_role("button", name="Execute").click()
    answer = runs.locator(".live-responses-table tbody .response")
    answer.wait_for()
    assert answer.locator(".response-col_status").text_content().strip() == "200"
    assert re.search(r'"count": \d+', answer.text_content())

    base = page.url.split("/api/")[0]
    assert all(url.startswith(base) for url in requested), requested  # nothing from outside


def test_docs_link_back_to_the_site_and_follow_its_theme(page, loaded_samples):
    page.emulate_media(color_scheme="light")
    page.goto("/")
    page.get_by_role("button", name="Dark theme").click()
    page.goto("/api/docs")
    page.locator(".opblock").first.wait_for()
    assert page.get_by_role("button", name="Dark theme").get_attribute("aria-pressed") == "true"
    assert "invert" in page.evaluate("getComputedStyle(document.body).filter")
    page.get_by_role("button", name="Dark theme").click()
    assert page.evaluate("getComputedStyle(document.body).filter") == "none"
    page.get_by_role("link", name="← tracer_site").click()
    page.wait_for_url(lambda url: url.rstrip("/").count("/") == 2)
    assert page.evaluate("document.documentElement.dataset.theme") == "light"


def _pixel(page, x: int, y: int) -> tuple[int, int, int]:
    """The colour the browser painted at (x, y): a 1 x 1 screenshot, its PNG read here."""
    png = page.screenshot(clip={"x": x, "y": y, "width": 1, "height": 1})
    chunks, at = {}, 8
    while at < len(png):
        length = struct.unpack(">I", png[at : at + 4])[0]
        kind = png[at + 4 : at + 8]
        chunks[kind] = chunks.get(kind, b"") + png[at + 8 : at + 8 + length]
        at += 12 + length
    row = zlib.decompress(chunks[b"IDAT"])
    # row[0] is the row's filter: for the first pixel of the first row, every filter
    # predicts 0, so the bytes after it are the colour itself.
    return tuple(row[1:4])


def test_docs_dark_paint_a_dark_page_not_white_behind_inverted_text(page, loaded_samples):
    # The body's white background used to be painted on the canvas, where the body's
    # invert filter does not reach: light grey text on a white page.
    for choice in ("dark", "system dark"):
        page.emulate_media(color_scheme="dark" if choice == "system dark" else "light")
        page.goto("/")
        page.evaluate("localStorage.clear()")
        if choice == "dark":
            page.get_by_role("button", name="Dark theme").click()
        page.goto("/api/docs")
        page.locator(".opblock").first.wait_for()
        blank = _pixel(page, 700, 15)  # the header, right of its link
        assert max(blank) < 60, (choice, blank)
    page.emulate_media(color_scheme="light")
    page.goto("/")
    page.evaluate("localStorage.clear()")
    page.goto("/api/docs")
    page.locator(".opblock").first.wait_for()
    assert min(_pixel(page, 700, 15)) > 240
