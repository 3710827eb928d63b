"""The files list's parameters."""

from __future__ import annotations

from django import forms

from traces.models import TraceFile


class FileFilterForm(forms.Form):
    """The files page's parameters (and a source's files)."""

    status = forms.ChoiceField(
        choices=[("", "any status"), *TraceFile.FileStatus.choices], required=False
    )
    after = forms.CharField(required=False, max_length=500)
    before = forms.CharField(required=False, max_length=500)
