"""The API's JSON shapes: entities."""

from __future__ import annotations

from datetime import datetime

from ninja import Schema
from pydantic import Field

from traces.queries.entities import has_page

from .common import (
    page_url,
)
from .steps import (
    LinkOut,
    StepItem,
)

# --- entities ------------------------------------------------------------------------------


class EntityType(Schema):
    type: str
    links: int
    subjects: int
    total: int


class EntityItem(Schema):
    """An entity (what steps read, write or act on), as the entities list shows it."""

    # From queries.entities.EntityRow (the list) and EntitySummary (EntityDetail).
    entity_type: str
    entity_id: str
    external_id: str
    links: int
    read: int = Field(
        description="Links that read it (in an entity's own answer: distinct steps); written, "
        "affected and other likewise."
    )
    written: int
    affected: int
    other: int
    subjects: int
    runs: int
    last_seen: datetime | None
    steps: str | None = Field(description="The API URL of the steps that touched it.")

    @staticmethod
    def resolve_steps(entity) -> str | None:
        if not has_page(entity.entity_type, entity.entity_id):
            return None
        return page_url("api:entity_steps", entity.entity_type, entity.entity_id)


class EntityDetail(EntityItem):
    """One entity: EntityItem, with some of its external ids."""

    external_ids: list[str] = Field(description="Up to 5 external ids of its newest links, sorted.")


class EntityList(Schema):
    types: list[EntityType]
    items: list[EntityItem]
    next: str | None
    prev: str | None


class EntityLinkPage(Schema):
    items: list[LinkOut]
    next: str | None = Field(description="Cursor for `?after=`.")
    prev: str | None = Field(description="Cursor for `?before=`.")


class EntitySubjectPage(Schema):
    items: list[StepItem]
    next: str | None = Field(description="Cursor for `?subject_after=`.")
    prev: str | None = Field(description="Cursor for `?subject_before=`.")


class EntitySteps(Schema):
    entity: EntityDetail
    links: EntityLinkPage = Field(description="Steps linked to it (read, wrote, affected).")
    subjects: EntitySubjectPage = Field(description="Steps whose own subject it is.")
