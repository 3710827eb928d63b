"""The search's one parameter."""

from __future__ import annotations

from django import forms


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
