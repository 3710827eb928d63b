"""The steps-across-runs page's filters: a bad value is a 400 with a message, never a 500."""

from __future__ import annotations

from django import forms

from traces.causes import NORMALISED_MAX, slot_end, slot_start
from traces.models import Status

from .common import (
    FORMAT_CHOICES,
    MAX_ID,
    RELATIVE_TIME,
    TIMES_CHOICES,
    DateTimeFilter,
    FilterForm,
)


class StepFilterForm(FilterForm):
    status = forms.ChoiceField(choices=[("", "any status"), *Status.choices], required=False)
    format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False)
    run_type = forms.CharField(required=False, max_length=200, label="Run type")
    times = forms.ChoiceField(
        choices=TIMES_CHOICES,
        required=False,
        label="Times",
        help_text="recorded: steps of runs whose times the source recorded; estimated: of "
        "runs whose times are the file's modified time (greentic), a failure dated by it",
    )
    name = forms.CharField(required=False, max_length=500, label="Step name")
    error = forms.CharField(required=False, max_length=500, label="Error text")
    since = DateTimeFilter(required=False, label="From")
    until = DateTimeFilter(required=False, label="To")
    after = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)
    before = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)


class StepListForm(StepFilterForm):
    """The steps page: StepFilterForm plus how to match the name, one run, one
    error group, and whether to group by error."""

    name_match = forms.ChoiceField(
        choices=[("contains", "contains"), ("exact", "is exactly")],
        required=False,
        label="Name match",
    )
    run = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, widget=forms.HiddenInput
    )
    error_group = forms.CharField(
        required=False, max_length=NORMALISED_MAX, strip=False, widget=forms.HiddenInput
    )
    group = forms.ChoiceField(choices=[("", "no grouping"), ("error", "by error")], required=False)

    @property
    def filters(self) -> dict:
        """The cleaned filters, a relative range ("last 24 h") from the start of its
        first 10-minute slot (and to the end of its last), so that the failure read
        models answer it (FailureSlice counts by slot); the rows are listed over the
        same range."""
        data = dict(self.cleaned_data)
        for name, snap in (("since", slot_start), ("until", slot_end)):
            if data.get(name) and RELATIVE_TIME.match(self.data.get(name) or ""):
                data[name] = snap(data[name])
                data["relative"] = True  # read by slot, even from a midnight
        return data

    @property
    def shows_error_groups(self) -> bool:
        data = self.cleaned_data
        return (
            data.get("status") == "failed"
            or data.get("group") == "error"
            or bool(data.get("error_group"))
        )
