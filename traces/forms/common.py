"""What the filter forms share: formats, a time filter in UTC, the largest id."""

from __future__ import annotations

from datetime import UTC

from django import forms

from traces.models import Format

FORMAT_CHOICES = [("", "any format"), *Format.choices]


class DateTimeFilter(forms.DateTimeField):
    """A time filter, always in UTC: an offset like +23:59 on year 1 would
    otherwise leave the range any database can compare."""

    input_formats = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
    widget = forms.DateTimeInput(attrs={"type": "datetime-local"})

    def to_python(self, value):
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
