"""The entity pages' parameters: a search, a type, and page cursors."""

from __future__ import annotations

from django import forms

CURSOR = {"required": False, "max_length": 1000, "widget": forms.HiddenInput}


class EntityListForm(forms.Form):
    q = forms.CharField(required=False, max_length=500, label="Search")
    type = forms.CharField(required=False, max_length=200, label="Type")
    after = forms.CharField(**CURSOR)
    before = forms.CharField(**CURSOR)


class EntityDetailForm(forms.Form):
    """Two lists on one page, each with its own cursors."""

    after = forms.CharField(**CURSOR)
    before = forms.CharField(**CURSOR)
    subject_after = forms.CharField(**CURSOR)
    subject_before = forms.CharField(**CURSOR)
