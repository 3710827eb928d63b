"""Two runs compared (the compare page and GET /api/runs/compare): which runs, the
duration threshold, "changes only", and the window's cursor."""

from __future__ import annotations

from django import forms

from .common import MAX_ID

RUN_ID_MESSAGES = {
    "required": "Give the id of the run (a whole number).",
    "invalid": "A run id is a whole number, like 42.",
    "min_value": "A run id is 1 or more.",
    "max_value": "No run has an id this large.",
}


def _run_id(label: str, help_text: str, *, required: bool = True) -> forms.IntegerField:
    return forms.IntegerField(
        min_value=1, max_value=MAX_ID, required=required, error_messages=RUN_ID_MESSAGES,
        label=label, help_text=help_text,
    )  # fmt: skip


def _flag(label: str, off: str, on: str, help_text: str) -> forms.ChoiceField:
    """A choice of "" (`off`) or "1" (`on`)."""
    return forms.ChoiceField(
        choices=[("", off), ("1", on)], required=False, label=label, help_text=help_text
    )


class CompareForm(forms.Form):
    a = _run_id(
        "Run A", "The run compared from (its id); `with=previous` finds it.", required=False
    )
    b = _run_id("Run B", "The run compared with A (its id).")
    # A = the run of B's type (and format) that started last before B.
    with_ = forms.ChoiceField(
        choices=[("", "run A"), ("previous", "the previous run of B's type")],
        required=False,
        label="With",
        help_text="previous: compare B with the run of its type that started before it",
    )
    percent = forms.FloatField(
        min_value=0, max_value=1_000_000, required=False, label="Slower or faster by %",
        help_text="A step's duration changed when it moved by at least this % of A's (20)...",
    )  # fmt: skip
    ms = forms.FloatField(
        min_value=0, max_value=10**12, required=False, label="and by ms",
        help_text="... and by at least this many milliseconds (100).",
    )  # fmt: skip
    changes = _flag(
        "Show", "all steps", "changes only",
        "1: only the steps added, removed, or whose status or duration changed",
    )  # fmt: skip
    summary = _flag(
        "Summary", "when cheap", "always",
        "1: count the changes even when both runs are big (one read of both runs' "
        "steps); by default they are counted when one run has at most 20,000 steps",
    )  # fmt: skip
    after = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)
    before = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)

    DEFAULT_PERCENT = 20.0
    DEFAULT_MS = 100.0

    def __init__(self, data=None, *args, **kwargs):
        # `with` is a Python keyword: the field is with_, its parameter `with`.
        if data is not None and "with" in data:
            data = data.copy()
            data["with_"] = data.get("with")
        super().__init__(data, *args, **kwargs)

    def clean(self):
        data = super().clean()
        a, b = data.get("a"), data.get("b")
        if data.get("with_") == "previous":
            if a is not None:
                raise forms.ValidationError("Give run A or with=previous, not both.")
        elif a is None and "a" not in self.errors:
            self.add_error("a", RUN_ID_MESSAGES["required"])
        if a is not None and a == b:
            raise forms.ValidationError(
                f"A and B are the same run ({a}): choose two different runs."
            )
        if data.get("after") and data.get("before"):
            raise forms.ValidationError("Give one page cursor, not both.")
        return data

    @property
    def changes_only(self) -> bool:
        return self.cleaned_data.get("changes") == "1"

    @property
    def summary_asked(self) -> bool:
        return self.cleaned_data.get("summary") == "1"

    def threshold_values(self) -> tuple[float, float]:
        data = self.cleaned_data
        percent = data.get("percent")
        ms = data.get("ms")
        return (
            self.DEFAULT_PERCENT if percent is None else percent,
            self.DEFAULT_MS if ms is None else ms,
        )
