"""Failures grouped by cause (traces/queries/errors.py): the normaliser, a pure function."""

import pytest

from traces.queries.errors import normalise_error


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "insufficient stock for sku SKU-1042: requested 3, available 1",
            "insufficient stock for sku <id>: requested <n>, available <n>",
        ),
        (
            'step "reserve-stock" failed: insufficient stock for sku SKU-7731',
            'step "reserve-stock" failed: insufficient stock for sku <id>',
        ),
        ("503 Service Unavailable", "<n> Service Unavailable"),
        ('ERROR: relation "facts" does not exist', 'ERROR: relation "facts" does not exist'),
        (
            "job 3f2a9c1e-1b2c-4d5e-8f90-0123456789ab timed out after 1m30s",
            "job <id> timed out after <duration>",
        ),
        ("object 01ARZ3NDEKTSV4RRFFQ69G5FAV gone", "object <id> gone"),
        ("commit 9f86d081884c7d65 not found at 0x7ffe12", "commit <id> not found at <id>"),
        ("charge ch_eyja0FMLMWplQR3JYqrpoAe4 failed", "charge <id> failed"),
        ("user bob@example.com is locked", "user <email> is locked"),
        ("failed at 2026-03-02T08:10:50.123Z", "failed at <time>"),
        (
            '{"error":"upstream timeout after 3000ms"}',
            '{"error":"upstream timeout after <duration>"}',
        ),
        ("retry in 5 seconds", "retry in <duration>"),
        ("smtp: 421 4.7.0 Try again later", "smtp: <n> <n> Try again later"),
        ("connect 10.0.0.12:5432 refused", "connect <n> refused"),
        ("keeps v2, E11000 and x86 as words", "keeps v2, E11000 and x86 as words"),
        ("'utf-8' codec, sha-256 and x86_64", "'utf-<n>' codec, sha-<n> and x86_<n>"),
        ("page_1 and SKU-7 are ids", "<id> and <id> are ids"),
        ('invalid value "' + "lorem ipsum " * 8 + '" for note', 'invalid value "<value>" for note'),
        ("  lots   of\tspace  \nsecond line", "lots of space"),
        ("\n\nfirst non-empty line\nsecond", "first non-empty line"),
        (
            "Traceback (most recent call last):\n  File \"x.py\", line 3\nKeyError: 'customer_id'",
            "KeyError: 'customer_id'",
        ),
        ("", ""),
    ],
)
def test_normalise_error_collapses_particulars_into_placeholders(message, expected):
    assert normalise_error(message) == expected


def test_normalise_error_is_at_most_300_characters():
    assert len(normalise_error("x" * 5000)) == 300
    assert normalise_error("x" * 5000).endswith("…")


def test_normalise_error_groups_the_same_cause_together():
    first = normalise_error("insufficient stock for sku SKU-1042: requested 3, available 1")
    second = normalise_error("insufficient stock for sku SKU-77: requested 12, available 0")
    assert first == second
