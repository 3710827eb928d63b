"""Entities, and the steps that touched one."""

from __future__ import annotations

from ninja import Query, Router
from ninja.errors import HttpError

from traces import queries
from traces.forms import EntityDetailForm, EntityListForm
from traces.schemas import EntityList, EntitySteps, form_query

from .common import READ, READ_ONE, cursors, text_param, valid

router = Router()

EntityQuery = form_query("EntityQuery", EntityListForm)
EntityStepsQuery = form_query("EntityStepsQuery", EntityDetailForm)


@router.get(
    "/entities",
    response={200: EntityList, **READ},
    tags=["entities"],
    summary="Entities and entity types",
)
def list_entities(request, filters: Query[EntityQuery]):
    """Entity types with their counts, and entities in (type, id) order: `type` keeps
    one type, `q` searches ids and external ids."""
    form = valid(EntityListForm, request.GET)
    data = form.cleaned_data
    page = queries.entities.entity_page(data)
    return {
        "types": queries.entities.entity_type_counts(),
        "items": page.items,
        "next": page.next_cursor,
        "prev": page.prev_cursor,
    }


@router.get(
    "/entities/{entity_type}/{path:entity_id}/steps",
    response={200: EntitySteps, **READ_ONE},
    tags=["entities"],
    summary="Steps that touched an entity",
)
def entity_steps(request, entity_type: str, entity_id: str, filters: Query[EntityStepsQuery]):
    """Every step that touched the entity, newest first: through links (read, written,
    affected; paged with `after`/`before`) and as its own subject (paged with
    `subject_after`/`subject_before`). The id may contain `/`."""
    entity_type = text_param("entity_type", entity_type)
    entity_id = text_param("entity_id", entity_id)
    data = valid(EntityDetailForm, request.GET).cleaned_data
    summary = queries.entities.entity_summary(entity_type, entity_id)
    if not summary.exists:
        raise HttpError(404, f"No step touched {entity_type} {entity_id}.")
    links = queries.entities.links_page(entity_type, entity_id, data)
    subjects = queries.entities.subjects_page(entity_type, entity_id, data)
    return {
        "entity": summary,
        "links": {"items": links.items, **cursors(links)},
        "subjects": {"items": subjects.items, **cursors(subjects)},
    }
