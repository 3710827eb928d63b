"""The search's one parameter."""

from __future__ import annotations

from django import forms

from .common import FORMAT_CHOICES, MAX_ID, DateTimeFilter, FilterForm


class SearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=500,
        label="Search",
        help_text="Ids (run, step, entity as type:id, external), actors, names, error words, "
        "attribute values; every word must match.",
    )
    jump = forms.ChoiceField(
        choices=[("", "open the one run, step or entity whose id is the query"), ("no", "list")],
        required=False,
        help_text="no: list the matches even when one id is exactly the query (the API "
        "always lists them, and names the exact one).",
    )


class LogSearchForm(FilterForm):
    """The log lines across runs (/logs/): words of the message (none: the newest
    lines), and the logs tab's filters."""

    q = forms.CharField(
        required=False,
        max_length=500,
        label="Message",
        help_text="Every word must be in the line; none: the newest lines of the filters.",
    )
    level = forms.RegexField(regex=r"^[\w.:-]*$", required=False, max_length=20)
    step = forms.CharField(required=False, max_length=500, help_text="A step name.")
    format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False, label="Format")
    type = forms.CharField(required=False, max_length=200, label="Run type")
    since = DateTimeFilter(required=False, label="From")
    until = DateTimeFilter(required=False, label="To")
    before = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, widget=forms.HiddenInput,
        help_text="The `older` cursor of the previous answer.",
    )  # fmt: skip
