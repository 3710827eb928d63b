"""The forms that add, change and delete a trace source."""

from __future__ import annotations

from datetime import timedelta

from django import forms

from traces import sources as scans
from traces.models import TraceSource

MAX_MINUTES = 60 * 24 * 31


class ScheduleField(forms.IntegerField):
    """Minutes between rescans; empty means on demand only."""

    def __init__(self, **kwargs):
        super().__init__(
            required=False,
            min_value=1,
            max_value=MAX_MINUTES,
            label="Rescan every (minutes)",
            help_text="Empty: only when you press Rescan now.",
            **kwargs,
        )


MIRROR_LABEL = "Delete runs the source no longer holds"
MIRROR_HELP = (
    "Off: a run whose file was overwritten (greentic's trace.json, a new traceos dump) or "
    "whose rows its writer deleted is kept, marked “no longer in its source”. "
    "On: it is deleted, as the source did."
)


class SourceForm(forms.ModelForm):
    every = ScheduleField()
    scan_now = forms.BooleanField(required=False, initial=True, label="Scan it now")

    class Meta:
        model = TraceSource
        fields = ["path", "label", "mirror_deletions"]
        labels = {"mirror_deletions": MIRROR_LABEL}
        help_texts = {"mirror_deletions": MIRROR_HELP}
        error_messages = {"path": {"unique": "This path is already a source."}}
        widgets = {"path": forms.TextInput(attrs={"placeholder": "/srv/traces/nightly"})}

    def clean_path(self) -> str:
        try:
            return str(scans.confine(self.cleaned_data["path"]))
        except scans.SourcePathError as exc:
            raise forms.ValidationError(str(exc), code="refused") from None

    def save(self, commit=True):
        self.instance.rescan_every = _minutes(self.cleaned_data.get("every"))
        return super().save(commit)


class SourceSettingsForm(forms.ModelForm):
    every = ScheduleField()

    class Meta:
        model = TraceSource
        fields = ["label", "enabled", "mirror_deletions"]
        labels = {"mirror_deletions": MIRROR_LABEL}
        help_texts = {"mirror_deletions": MIRROR_HELP}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        every = self.instance.rescan_every
        self.fields["every"].initial = int(every.total_seconds() // 60) if every else None

    def save(self, commit=True):
        self.instance.rescan_every = _minutes(self.cleaned_data.get("every"))
        return super().save(commit)


def _minutes(value: int | None) -> timedelta | None:
    return timedelta(minutes=value) if value else None


class SourceDeleteForm(forms.Form):
    delete_runs = forms.BooleanField(
        required=False, label="Also delete the runs read from it, and forget its files"
    )
