"""The site's forms, used by the pages and the API alike.

Filter forms: every filter is a query-string parameter, validated here, so a bad
value is a 400 with a message and never a 500. Then the forms that add and change
trace sources, and the upload form."""

from __future__ import annotations

from datetime import UTC, timedelta

from django import forms

from traces import sources as scans
from traces.models import Format, Status, TraceFile, TraceSource

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


class FileFilterForm(forms.Form):
    """The files page's parameters (and a source's files)."""

    status = forms.ChoiceField(
        choices=[("", "any status"), *TraceFile.FileStatus.choices], required=False
    )
    after = forms.CharField(required=False, max_length=500)
    before = forms.CharField(required=False, max_length=500)


# --- sources --------------------------------------------------------------------------------

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


# --- upload ---------------------------------------------------------------------------------


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files under one name; an empty file is the loader's to report."""

    widget = MultipleFileInput

    def __init__(self, **kwargs):
        super().__init__(allow_empty_file=True, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else [data] if data else []
        if not files:
            raise forms.ValidationError("Choose at least one file to upload.", code="required")
        return [super(MultipleFileField, self).clean(item, initial) for item in files]


class UploadForm(forms.Form):
    files = MultipleFileField(label="Trace files or a .zip archive")
