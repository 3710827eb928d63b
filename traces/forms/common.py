"""What the filter forms share: formats, a time filter in UTC, the largest id."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

from django import forms
from django.utils import timezone

from traces.models import Format

FORMAT_CHOICES = [("", "any format"), *Format.choices]
# Runs whose start the source recorded, or whose times are estimated (greentic: the
# file's modified time), and the steps of either: the failing-now strip counts them
# apart and links each to the runs list or the failed-steps list with `times=`.
TIMES_CHOICES = [
    ("", "recorded or estimated"),
    ("recorded", "recorded"),
    ("estimated", "estimated (≈ the file's time)"),
]


# A time back from now, as Grafana writes it: `15m`, `1h`, `24h`, `7d`, `2w`, or `now-1h`.
RELATIVE_TIME = re.compile(r"^\s*(?:now\s*-\s*)?(\d{1,7})\s*(m|h|d|w)\s*$", re.IGNORECASE)
RELATIVE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# The presets the pages offer beside a time filter.
TIME_PRESETS = (("1h", "1 h"), ("24h", "24 h"), ("7d", "7 d"), ("30d", "30 d"))


def relative_time(value: str):
    """The moment `value` names back from now (`24h` → 24 hours ago), or None when
    it is not a relative time."""
    match = RELATIVE_TIME.match(value or "")
    if match is None:
        return None
    amount, unit = int(match[1]), match[2].lower()
    try:
        return timezone.now() - timedelta(**{RELATIVE_UNITS[unit]: amount})
    except OverflowError:
        raise forms.ValidationError(
            "That time is outside the years 1 to 9999.", code="out_of_range"
        ) from None


class DateTimeFilter(forms.DateTimeField):
    """A time filter, always in UTC: an offset like +23:59 on year 1 would
    otherwise leave the range any database can compare. It also takes a time back
    from now (`1h`, `24h`, `7d`, `now-15m`), kept relative in the URL so a bookmark
    or a refresh always shows the last day, not the day it was made."""

    input_formats = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
    # Django's "Enter a valid date/time." hides that a time back from now is taken.
    default_error_messages = {
        "invalid": "Give a time back from now (15m, 1h, 24h, 7d, 2w, now-1h) "
        "or a date and time in UTC (2026-11-01 or 2026-11-01 12:00)."
    }
    # A text box, not datetime-local: the browser would clear `24h` as invalid.
    widget = forms.TextInput(
        attrs={"placeholder": "24h or 2026-11-01 12:00", "size": 16, "list": "time-presets"}
    )

    def to_python(self, value):
        if isinstance(value, str):
            relative = relative_time(value)
            if relative is not None:
                return relative
        result = super().to_python(value)
        if result is None:
            return None
        try:
            return result.astimezone(UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError(
                "That time is outside the years 1 to 9999.", code="out_of_range"
            ) from None


# The largest id a database row can have (64-bit).
MAX_ID = 2**63 - 1


class FilterForm(forms.Form):
    """A list's filters with a time range (`since`, `until`) and page cursors
    (`after`, `before`): the range must not run backwards, and a page is after one
    row or before one, not both."""

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("“From” is after “To”.")
        if data.get("after") and data.get("before"):
            raise forms.ValidationError("Give one page cursor, not both.")
        return data
