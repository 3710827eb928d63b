"""Log lines across runs (/logs/) on a phone (390 x 844) with hostile values: messages
of 300 characters without a break, right-to-left text with an override character,
long run and step names. Each line is a card whose message (what is searched) has a
line of its own the card's width; the page and the table never scroll sideways, in
light or dark (as a table it was 734 px wide in 371, the message off to the right)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from tests.browser.conftest import PHONE, assert_no_sideways_scroll, background_is_dark
from traces.ingest import store
from traces.ingest.records import LogRecord, RunRecord, StepRecord

SHOTS = os.environ.get("TRACER_SHOTS", "")
WORD = "zebrafish"
LONG = f"{WORD}-" + "x" * 300
RTL = f"{WORD} תשלום נכשל עבור הלקוח שילוח מחדש \u202egnp.exe"


@pytest.fixture
def hostile_logs(transactional_db):
    started = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    for n in range(2):
        steps = [StepRecord(key=f"s{n}", name=f"{WORD}_{'n' * 120}", started_at=started)]
        logs = [
            LogRecord(
                seq=seq, message=message, level="error" if seq % 2 else "info",
                time=started + timedelta(milliseconds=seq), step_key="s0" if seq else None,
            )
            for seq, message in enumerate((LONG, RTL, f"{WORD} <script>alert(1)</script> {LONG}"))
        ]  # fmt: skip
        for log in logs:
            log.step_key = f"s{n}" if log.step_key else None
        record = RunRecord(
            format="otlp", external_id=f"{LONG}-{n}", name=f"{RTL} {'r' * 150}",
            type=f"{WORD}.{'y' * 120}", status="failed", started_at=started,
            steps=steps, logs=logs,
        )  # fmt: skip
        with transaction.atomic():  # as the loader writes a run
            store.write_run(record, source_file=None, origin="")


def _fits(phone) -> None:
    assert_no_sideways_scroll(phone)
    wrap = phone.locator(".table-wrap")
    assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth"), "the table scrolls sideways"


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("query", ["", WORD])
def test_log_lines_are_cards_the_message_on_a_line_of_its_own(phone, hostile_logs, scheme, query):
    phone.emulate_media(color_scheme=scheme)
    phone.goto(f"/logs/?q={query}" if query else "/logs/")
    assert background_is_dark(phone) == (scheme == "dark")
    rows = phone.locator("table.log-search-table tbody tr[data-row]")
    assert rows.count() == 6
    _fits(phone)
    card = phone.locator("main .table-wrap").bounding_box()
    for index in range(rows.count()):
        row = rows.nth(index)
        assert row.evaluate("tr => getComputedStyle(tr).display") != "table-row"
        message = row.locator("td.log-cell").bounding_box()
        # The card's width (less its padding), below the run and the step, not beside them.
        assert message["x"] >= 0 and message["x"] + message["width"] <= PHONE["width"] + 0.5
        assert message["width"] >= card["width"] - 30, (message, card)
        for cell in ("td.log-time", "td.log-run", "td.log-step"):
            above = row.locator(cell).bounding_box()
            assert above["y"] + above["height"] <= message["y"] + 0.5, cell
            assert above["x"] + above["width"] <= PHONE["width"] + 0.5, cell
    if SHOTS:
        phone.screenshot(path=f"{SHOTS}/logs-phone-{scheme}{'-q' if query else ''}.png")
    # Every message is there whole (wrapped, not cut), as text.
    text = phone.locator("main").inner_text().replace("\n", "")
    assert LONG in text and "<script>alert(1)</script>" in text
    assert phone.locator("main script").count() == 0
    # The override in a run's name stays inside it (an isolating <bdi>): its format and
    # type read left to right after it.
    run = rows.first.locator("td.log-run")
    assert run.locator("a bdi").count() == 1 and run.locator(".muted bdi").count() == 1
    assert "\u202e" in rows.first.locator("td.log-run a bdi").inner_text()
