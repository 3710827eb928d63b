"""The API's JSON shapes: params."""

from __future__ import annotations

from typing import Any

from django import forms
from ninja import Schema
from pydantic import Field, create_model

# --- query parameters from Django forms -------------------------------------------------

CURSOR_HELP = "A `next` or `prev` cursor from the previous answer."


def form_query(
    name: str, form_class: type[forms.Form], only: tuple[str, ...] = (), **extra: dict
) -> type[Schema]:
    """A Schema with one optional string field per form field (or per field in `only`),
    documented as the form validates it: choices as an enum, integers as integers.

    The fields stay strings on purpose: the view validates `request.GET` with the form
    itself, so the documentation can never accept what the form refuses or the reverse.
    `extra` adds parameters the form does not have, as JSON schema dicts."""
    form = form_class()
    fields: dict[str, Any] = {}
    for field_name, field in form.fields.items():
        if only and field_name not in only:
            continue
        fields[field_name] = _query_field(field_name, _field_schema(field_name, field))
    for field_name, schema in extra.items():
        fields[field_name] = _query_field(field_name, schema)
    return create_model(name, __base__=Schema, **fields)


def _query_field(name: str, schema: dict):
    def replace(generated: dict) -> None:
        generated.clear()
        generated.update(schema)

    return (str, Field("", json_schema_extra=replace))


def _field_schema(name: str, field: forms.Field) -> dict:
    description = str(field.help_text or field.label or name.replace("_", " ").capitalize())
    if name in ("after", "before") or name.endswith(("_after", "_before")):
        description = CURSOR_HELP
    schema: dict[str, Any] = {"type": "string", "description": description}
    if isinstance(field, forms.ChoiceField):
        schema["enum"] = [str(value) for value, _label in field.choices]
    elif isinstance(field, forms.IntegerField):
        schema = {"type": "integer", "description": description}
        if field.min_value is not None:
            schema["minimum"] = field.min_value
        schema["maximum"] = field.max_value if field.max_value is not None else 2**63 - 1
    elif isinstance(field, forms.DateTimeField):
        schema["description"] = (
            f"{description}: ISO 8601 date and time (e.g. 2026-11-01T12:00:00Z) or a time"
            " back from now (15m, 1h, 24h, 7d, 2w, now-1h)"
        )
    elif isinstance(field, forms.CharField) and field.max_length:
        schema["maxLength"] = field.max_length
    return schema
