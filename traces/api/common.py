"""What the endpoint modules share: the API's own errors, the check of a query string
with the page's form, cursors, permissions."""

from __future__ import annotations

from datetime import UTC, datetime

from django import forms
from ninja.errors import HttpError

from traces.pagination import Page
from traces.schemas import ErrorOut

MAX_ID = 2**63 - 1


class ApiBadRequest(Exception):
    """A query parameter that does not validate: 400, with a message per parameter."""

    def __init__(self, detail: str, errors: dict | None = None):
        self.detail = detail
        self.errors = errors
        super().__init__(detail)


class ApiUnprocessable(ApiBadRequest):
    """A request body that does not validate: 422."""


def errors(*codes: int) -> dict:
    return dict.fromkeys(codes, ErrorOut)


READ = errors(400, 401)
READ_ONE = errors(400, 401, 404)


def valid(form_class: type[forms.Form], data) -> forms.Form:
    """The page's form, bound to the query string; ApiBadRequest (400) if not valid."""
    form = form_class(data)
    if not form.is_valid():
        raise ApiBadRequest(form_message(form), form_errors(form))
    problems = _out_of_range(form.cleaned_data)
    if problems:
        raise ApiBadRequest(_join(problems), problems)
    return form


def form_errors(form: forms.Form) -> dict[str, list[str]]:
    return {
        name: [error["message"] for error in messages]
        for name, messages in form.errors.get_json_data().items()
    }


def form_message(form: forms.Form) -> str:
    return _join(form_errors(form))


def _join(problems: dict[str, list[str]]) -> str:
    parts = [
        " ".join(messages) if name == "__all__" else f"{name}: {' '.join(messages)}"
        for name, messages in problems.items()
    ]
    return "; ".join(parts)


def _out_of_range(data: dict) -> dict[str, list[str]]:
    """Values a form accepts that no database column can hold: a 400 here rather than
    an error in the database driver. Times are moved to UTC on the way (PostgreSQL
    refuses offsets past ±16 hours, which ISO 8601 allows)."""
    problems = {}
    for name, value in data.items():
        if isinstance(value, datetime):
            try:
                data[name] = value.astimezone(UTC)
            except (OverflowError, ValueError):
                problems[name] = ["This date and time is out of range."]
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ID:
            problems[name] = ["This number is too large."]
    return problems


def text_param(name: str, value: str) -> str:
    """A path parameter the database will be asked about: no NUL characters."""
    if "\x00" in value:
        raise ApiBadRequest(f"{name}: Null characters are not allowed.", {name: ["Null char."]})
    return value


def require(request, permission: str) -> None:
    user = request.auth
    if not getattr(user, "has_perm", None) or not user.has_perm(permission):
        raise HttpError(403, f"This needs the {permission} permission, which you do not have.")


def cursors(page: Page) -> dict:
    return {"next": page.next_cursor, "prev": page.prev_cursor}
