"""Filter forms: every filter is a query-string parameter, validated here, so a
bad value is a 400 with a message and never a 500."""

from __future__ import annotations

from datetime import UTC

from django import forms

from .models import Format, Status

STATUS_CHOICES = [("", "any status"), *Status.choices, ("stale", "stale")]
FORMAT_CHOICES = [("", "any format"), *Format.choices]
# Runs whose source no longer holds them (a file overwritten, rows deleted) are kept.
IN_SOURCE_CHOICES = [
    ("", "in its source or not"),
    ("yes", "still in its source"),
    ("no", "no longer in its source"),
]


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


class RunFilterForm(forms.Form):
    SORTS = {
        "-started": ("started_at", True),
        "started": ("started_at", False),
        "-duration": ("duration_ms", True),
        "duration": ("duration_ms", False),
        "-failed": ("steps_failed", True),
        "-steps": ("step_count", True),
        "name": ("name", False),
    }

    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False)
    type = forms.CharField(required=False, max_length=200)
    in_source = forms.ChoiceField(
        choices=IN_SOURCE_CHOICES,
        required=False,
        label="Source",
        help_text="no: runs kept as history after their source stopped holding them",
    )
    q = forms.CharField(required=False, max_length=500, label="Text")
    since = DateTimeFilter(required=False, label="From")
    until = DateTimeFilter(required=False, label="To")
    sort = forms.ChoiceField(choices=[(key, key) for key in SORTS], required=False)
    after = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)
    before = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)

    def sort_key(self) -> tuple[str, bool]:
        return self.SORTS[self.cleaned_data.get("sort") or "-started"]


class StepFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "any status"), *Status.choices], required=False)
    format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False)
    run_type = forms.CharField(required=False, max_length=200, label="Run type")
    name = forms.CharField(required=False, max_length=500, label="Step name")
    error = forms.CharField(required=False, max_length=500, label="Error text")
    since = DateTimeFilter(required=False, label="From")
    until = DateTimeFilter(required=False, label="To")
    after = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)
    before = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)
