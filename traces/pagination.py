"""Keyset pagination: page N of 100,000 rows costs what page 1 costs.

A cursor is the (sort value, id) of the row at the edge of the current page;
the next page is everything strictly after it in the sort order, read from
the index. NULL sort values come last in both directions.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import (
    CharField,
    DateTimeField,
    F,
    Field,
    FloatField,
    IntegerField,
    Model,
    Q,
    QuerySet,
    TextField,
)
from django.utils.dateparse import parse_datetime

# Rows in a page of a list, on the pages and in the API alike.
PAGE_SIZE = 50
# What any database column compares an integer with: 64 bits.
INT64 = range(-(2**63), 2**63)


START_AGAIN = "the page cursor is not valid; start again from the first page"


class BadCursor(ValueError):
    """A cursor no page of the list wrote: edited, cut short, or from another sort."""

    def __init__(self, message: str = START_AGAIN):
        super().__init__(message)


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


def decode_cursor(cursor: str, field: Field) -> tuple[Any, int]:
    """The (sort value, id) a cursor holds, checked against the field the list is
    sorted by: a cursor no page of this list could have written (edited, or from
    another sort) is a BadCursor here rather than an error in the query."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, pk = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadCursor() from exc
    if not _is_int64(pk):
        raise BadCursor()
    return _sort_value(value, field), pk


def _sort_value(value: Any, field: Field) -> Any:
    if value is None:
        if field.null:
            return None
    elif isinstance(field, DateTimeField):
        return _moment(value)
    elif isinstance(field, FloatField):
        if _is_int64(value) or (isinstance(value, float) and math.isfinite(value)):
            return float(value)
    elif isinstance(field, IntegerField):
        if _is_int64(value):
            return value
    elif isinstance(field, (CharField, TextField)):
        if isinstance(value, str) and "\x00" not in value:  # PostgreSQL refuses NUL in text
            return value
    else:
        raise TypeError(f"no cursor check for a {type(field).__name__}: add one here")
    raise BadCursor()


def _moment(value: Any) -> datetime:
    # encode_cursor writes {"dt": isoformat} of an aware datetime.
    if isinstance(value, dict) and value.keys() == {"dt"} and isinstance(value["dt"], str):
        try:
            moment = parse_datetime(value["dt"])
            if moment is not None and moment.tzinfo is not None:
                # In UTC, as the database compares it: out of range is an error now, not there.
                return moment.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise BadCursor()


def _is_int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in INT64


def cursors_of(data: dict, prefix: str = "") -> dict:
    """A form's `after` and `before` (or `<prefix>after`...) as keyset_page takes them:
    a blank cursor is none."""
    return {
        "after": data.get(f"{prefix}after") or None,
        "before": data.get(f"{prefix}before") or None,
    }


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
    # Where NULLs go only matters for a column that has them; saying it anyway would
    # keep PostgreSQL from walking a plain DESC index (its DESC puts NULLs first).
    nulls_last = not backwards if _may_be_null(queryset, field) else None
    if cursor:
        value, pk = decode_cursor(cursor, _sort_field(queryset, field))
        queryset = queryset.filter(
            _beyond(field, value, pk, descending=forward_desc, nulls_last=nulls_last)
        )
    order = _ordering(field, descending=forward_desc, nulls_last=nulls_last)
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


def _sort_field(queryset: QuerySet, name: str) -> Field:
    annotation = queryset.query.annotations.get(name)
    if annotation is not None:
        return annotation.output_field
    field = queryset.model._meta.get_field(name)
    # A generated column's values are its expression's (Run.listed_at).
    return field.output_field if field.generated else field


def _may_be_null(queryset: QuerySet, name: str) -> bool:
    # An expression's output field does not say whether its value can be NULL.
    return name in queryset.query.annotations or _sort_field(queryset, name).null


def _cursor_of(row: Model, field: str) -> str:
    return encode_cursor(getattr(row, field), row.pk)


def _ordering(field: str, *, descending: bool, nulls_last: bool | None):
    """`nulls_last` None: the column has no NULLs (the order says nothing of them)."""
    nulls = {} if nulls_last is None else {"nulls_last" if nulls_last else "nulls_first": True}
    if descending:
        return [F(field).desc(**nulls), F("id").desc()]
    return [F(field).asc(**nulls), F("id").asc()]


def _beyond(field: str, value: Any, pk: int, *, descending: bool, nulls_last: bool | None) -> Q:
    """Rows strictly after (value, pk) in the given order (`nulls_last` as _ordering's)."""
    past = "lt" if descending else "gt"
    past_id = Q(**{f"id__{past}": pk})
    if value is None:
        if nulls_last:  # we are among the trailing NULLs
            return Q(**{f"{field}__isnull": True}) & past_id
        return Q(**{f"{field}__isnull": False}) | (Q(**{f"{field}__isnull": True}) & past_id)
    after_value = Q(**{f"{field}__{past}": value}) | (Q(**{field: value}) & past_id)
    if nulls_last is None:
        return after_value
    if nulls_last:
        return after_value | Q(**{f"{field}__isnull": True})
    return after_value
