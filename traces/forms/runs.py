"""The runs list's filters, and every query parameter of one run's page (and of its
API twins: its steps, timeline and log)."""

from __future__ import annotations

from django import forms

from traces.models import Status
from traces.queries.find import MAX_FIND, BadFind
from traces.queries.find import parse as parse_find

from .common import FORMAT_CHOICES, MAX_ID, TIMES_CHOICES, DateTimeFilter, FilterForm

# Two that are no run status: "stale" (running, but quiet too long) and "items"
# (runs whose steps' items failed, whatever their status: the failing-now strip's).
STATUS_CHOICES = [
    ("", "any status"),
    *Status.choices,
    ("stale", "stale"),
    ("items", "with failed items"),
]
# Runs whose source no longer holds them (a file overwritten, rows deleted) are kept.
IN_SOURCE_CHOICES = [
    ("", "in its source or not"),
    ("yes", "still in its source"),
    ("no", "no longer in its source"),
]


class RunFilterForm(FilterForm):
    # By start: runs whose times are estimated or unknown after the timed ones
    # (Run.listed_at), so that they do not crowd them out.
    SORTS = {
        "-started": ("listed_at", True),
        "started": ("listed_at", False),
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
    times = forms.ChoiceField(
        choices=TIMES_CHOICES,
        required=False,
        label="Times",
        help_text="recorded: runs whose start the source recorded; estimated: runs whose "
        "times are the file's modified time (greentic)",
    )
    q = forms.CharField(required=False, max_length=500, label="Text")
    since = DateTimeFilter(required=False, label="From")
    until = DateTimeFilter(required=False, label="To")
    sort = forms.ChoiceField(choices=[(key, key) for key in SORTS], required=False)
    after = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)
    before = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)

    def sort_key(self) -> tuple[str, bool]:
        return self.SORTS[self.cleaned_data.get("sort") or "-started"]


class NewRunsForm(RunFilterForm):
    """The runs list's filters and the newest run id the page had (`seen`)."""

    seen = forms.IntegerField(min_value=0, max_value=MAX_ID)


# --- one run's page ----------------------------------------------------------------------

TABS = ("tree", "timeline", "critical", "logs", "io", "attributes")
MAX_EXPAND = 32
MAX_KEY = 255
FULL_CHOICES = [
    (name, name) for name in ("input", "output", "error", "attributes", "calls", "logs")
]


class KeyListField(forms.Field):
    """A repeated query parameter (`?expand=a&expand=b`): step keys."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        return [str(item) for item in value or []]

    def validate(self, value):
        super().validate(value)
        if len(value) > MAX_EXPAND:
            raise forms.ValidationError(f"at most {MAX_EXPAND} expanded steps")
        if any(not key or len(key) > MAX_KEY for key in value):
            raise forms.ValidationError("a step key is empty or too long")


class RunPageForm(forms.Form):
    """Every query parameter of the run page and its fragments."""

    tab = forms.ChoiceField(choices=[(tab, tab) for tab in TABS], required=False)
    failed = forms.ChoiceField(choices=[("", "all"), ("0", "all"), ("1", "failed")], required=False)
    expand = KeyListField(required=False)
    after = forms.CharField(required=False, max_length=500)
    before = forms.CharField(required=False, max_length=500)
    # The loop index of the row before a "show more" window, so iteration headings continue.
    loop = forms.IntegerField(required=False)
    level = forms.RegexField(regex=r"^[\w.:-]*$", required=False, max_length=20)
    step = forms.CharField(required=False, max_length=MAX_KEY, help_text="A step's key or name.")
    q = forms.CharField(
        required=False, max_length=500, help_text="Log lines whose message holds this text."
    )
    duplicates = forms.ChoiceField(choices=[("", "no"), ("0", "no"), ("1", "yes")], required=False)
    full = forms.MultipleChoiceField(choices=FULL_CHOICES, required=False)
    format = forms.ChoiceField(
        choices=[("", "html"), ("html", "html"), ("json", "json")], required=False
    )
    find = forms.CharField(
        required=False,
        max_length=MAX_FIND,
        strip=False,
        help_text="Find in run: words of a step's name, key, type or error (each a whole "
        "word; `word*` for its start) and `status:NAME`; every term must match.",
    )
    # The matches' window starts at this one (its number, for "match 53 of 1,234").
    find_at = forms.IntegerField(required=False, min_value=0, max_value=10**9)
    # Not `matches`: a form control of that name would hide the form's own .matches().
    only = forms.ChoiceField(
        choices=[("", "no"), ("0", "no"), ("1", "yes")],
        required=False,
        help_text="The timeline: only the steps the find matches.",
    )

    def clean_find(self):
        text = self.cleaned_data.get("find") or ""
        try:
            self.cleaned_data["found"] = parse_find(text)
        except BadFind as exc:
            raise forms.ValidationError(str(exc)) from None
        return text.strip()

    # The timeline's time window, in ms from the start of the run's time axis.
    from_ms = forms.FloatField(required=False, min_value=0, max_value=1e13)
    to_ms = forms.FloatField(required=False, min_value=0, max_value=1e13)

    @property
    def failed_only(self) -> bool:
        return self.cleaned_data.get("failed") == "1"

    @property
    def found(self):
        """The parsed find (queries.find.Find), empty when none was given."""
        return self.cleaned_data.get("found") or parse_find("")


class RunStepsForm(RunPageForm):
    """GET /api/runs/{id}/steps: the run page's parameters, and `parent` for one tree level."""

    parent = forms.CharField(required=False, max_length=255, strip=False)


class RunExportForm(forms.Form):
    """GET /api/runs/{id}/export: which file to write."""

    format = forms.ChoiceField(
        choices=[("otlp", "OTLP/JSON"), ("chrome", "Chrome trace events (Perfetto)")],
        required=False,
        help_text="otlp (OpenTelemetry OTLP/JSON, the default) or chrome (trace events).",
    )
