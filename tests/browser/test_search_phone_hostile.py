"""Search results on a phone (390 x 844) with hostile values: ids of 200 characters
without a break, right-to-left names and an override character, in runs, steps,
entities and attribute values. The page never scrolls sideways, in light or dark;
each group is a list of cards, long values wrap (the whole value still there)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from django.db import transaction

from tests.browser.conftest import PHONE, assert_no_sideways_scroll, background_is_dark
from traces.ingest import store
from traces.ingest.records import LinkRecord, RunRecord, StepRecord

SHOTS = os.environ.get("TRACER_SHOTS", "")
WORD = "zebrafish"
LONG_ID = f"{WORD}-" + "x" * 200
RTL = f"{WORD} תשלום נכשל עבור הלקוח שילוח מחדש ‮gnp.exe"
ARABIC = "فشل الدفع للعميل " * 6


@pytest.fixture
def hostile_results(transactional_db):
    started = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    for n in range(3):
        steps = [
            StepRecord(
                key=f"{LONG_ID}-step-{n}", name=f"{RTL} {n}", started_at=started,
                status="failed", error=f"{WORD} {LONG_ID} {ARABIC}",
                entity_type=f"{WORD}_{'t' * 80}", entity_id=f"{LONG_ID}-{n}",
                attributes={"note": f"{WORD} {LONG_ID}"},
            )
        ]  # fmt: skip
        links = [
            LinkRecord(
                step_key=steps[0].key, link_type="input", entity_type="customer",
                entity_id=f"{WORD}{'9' * 150}{n}", external_id=f"{LONG_ID}-ext-{n}",
            )
        ]  # fmt: skip
        record = RunRecord(
            format="otlp", external_id=f"{LONG_ID}-{n}", name=f"{RTL} {LONG_ID}",
            type=f"{WORD}.{'y' * 120}", actor=f"{WORD}@{'a' * 100}.io", status="failed",
            trigger=ARABIC, started_at=started, error=f"{WORD} {LONG_ID}",
            attributes={"customer": f"{WORD} {LONG_ID} {ARABIC}"}, steps=steps, links=links,
        )  # fmt: skip
        with transaction.atomic():  # as the loader writes a run
            store.write_run(record, source_file=None, origin="")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_hostile_results_fit_a_phone_as_cards(phone, hostile_results, scheme):
    phone.emulate_media(color_scheme=scheme)
    phone.goto(f"/search/?q={WORD}&jump=no")
    assert background_is_dark(phone) == (scheme == "dark")
    for kind in ("Runs", "Steps", "Entities"):
        group = phone.get_by_role("region", name=kind)
        assert group.locator("tbody tr").count() >= 3, kind
        # A card: its cells stacked, none wider than the phone, nothing scrolled inside.
        row = group.locator("tbody tr").first
        assert row.evaluate("tr => getComputedStyle(tr).display") != "table-row", kind
        wrap = group.locator(".table-wrap")
        assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth"), kind
        for cell in row.locator("td").all():
            box = cell.bounding_box()
            if box:
                assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, kind
    assert_no_sideways_scroll(phone)
    if SHOTS:
        phone.screenshot(path=f"{SHOTS}/search-phone-{scheme}.png")
    # Long values are all there: wrapped, or cut short with the whole in a title.
    page_text = phone.locator("main").inner_text()
    assert LONG_ID in page_text.replace("\n", "")
    # The header's query and the summary fit too with the longest query the box takes.
    phone.goto(f"/search/?q={LONG_ID}{'q' * 250}&jump=no")
    assert_no_sideways_scroll(phone)


def test_a_phone_search_from_the_header_with_a_long_id_fits(phone, hostile_results):
    phone.goto("/")
    phone.locator("#global-search").fill(f"{LONG_ID}-1")
    phone.locator("#global-search").press("Enter")
    phone.wait_for_load_state()
    assert_no_sideways_scroll(phone)
