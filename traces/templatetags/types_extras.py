"""Links to run types' pages from any template: `{{ run.type|type_url }}`."""

from django import template

from traces.views.types import type_url as _type_url

register = template.Library()


@register.filter
def type_url(run_type: str) -> str:
    """The type's trends page, "" when it has none (no type, or one no URL carries)."""
    return _type_url(run_type or "")
