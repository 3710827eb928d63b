"""Keyset pagination: page N of 100,000 rows costs what page 1 costs.

A cursor is the (sort value, id) of the row at the edge of the current page;
the next page is everything strictly after it in the sort order, read from
the index. NULL sort values come last in both directions.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F, Model, Q, QuerySet
from django.utils.dateparse import parse_datetime


class BadCursor(ValueError):
    pass


@dataclass
class Page:
    items: list[Model]
    next_cursor: str | None
    prev_cursor: str | None


def encode_cursor(value: Any, pk: int) -> str:
    if isinstance(value, datetime):
        value = {"dt": value.isoformat()}
    raw = json.dumps([value, pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, pk = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadCursor("the page cursor is not valid; start again from the first page") from exc
    if not isinstance(pk, int):
        raise BadCursor("the page cursor is not valid; start again from the first page")
    if isinstance(value, dict) and "dt" in value:
        value = parse_datetime(str(value["dt"]))
        if value is None:
            raise BadCursor("the page cursor is not valid; start again from the first page")
    return value, pk


def keyset_page(
    queryset: QuerySet,
    field: str,
    *,
    descending: bool,
    after: str | None = None,
    before: str | None = None,
    size: int = 50,
) -> Page:
    """One page of `queryset` ordered by `field` (then id), after or before a cursor."""
    backwards = before is not None
    cursor = before if backwards else after
    # Walking backwards is walking forwards in the reversed order.
    forward_desc = descending != backwards
    if cursor:
        value, pk = decode_cursor(cursor)
        queryset = queryset.filter(
            _beyond(field, value, pk, descending=forward_desc, nulls_last=not backwards)
        )
    order = _ordering(field, descending=forward_desc, nulls_last=not backwards)
    rows = list(queryset.order_by(*order)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    has_next = more if not backwards else True
    has_prev = (cursor is not None) if not backwards else more
    return Page(
        items=rows,
        next_cursor=_cursor_of(rows[-1], field) if rows and has_next else None,
        prev_cursor=_cursor_of(rows[0], field) if rows and has_prev else None,
    )


def _cursor_of(row: Model, field: str) -> str:
    return encode_cursor(getattr(row, field), row.pk)


def _ordering(field: str, *, descending: bool, nulls_last: bool):
    nulls = {"nulls_last": True} if nulls_last else {"nulls_first": True}
    if descending:
        return [F(field).desc(**nulls), F("id").desc()]
    return [F(field).asc(**nulls), F("id").asc()]


def _beyond(field: str, value: Any, pk: int, *, descending: bool, nulls_last: bool) -> Q:
    """Rows strictly after (value, pk) in the given order."""
    past = "lt" if descending else "gt"
    past_id = Q(**{f"id__{past}": pk})
    if value is None:
        if nulls_last:  # we are among the trailing NULLs
            return Q(**{f"{field}__isnull": True}) & past_id
        return Q(**{f"{field}__isnull": False}) | (Q(**{f"{field}__isnull": True}) & past_id)
    after_value = Q(**{f"{field}__{past}": value}) | (Q(**{field: value}) & past_id)
    if nulls_last:
        return after_value | Q(**{f"{field}__isnull": True})
    return after_value
