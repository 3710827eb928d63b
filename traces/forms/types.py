"""The run types pages' filters (and their API twins'): the runs list's format,
status and time range, and the trend's bucket."""

from __future__ import annotations

from django import forms

from traces.models import Status

from .common import FORMAT_CHOICES, DateTimeFilter, FilterForm


class TypeListForm(FilterForm):
    format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False)
    since = DateTimeFilter(required=False, label="From")
    until = DateTimeFilter(required=False, label="To")


class TypeTrendsForm(TypeListForm):
    # The trends are kept by status, not by staleness (which changes with the clock).
    status = forms.ChoiceField(choices=[("", "any status"), *Status.choices], required=False)
    bucket = forms.ChoiceField(
        choices=[("day", "per day"), ("hour", "per hour")],
        required=False,
        help_text="day or hour (UTC)",
    )
