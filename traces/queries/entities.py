"""Entities: every business object a step read, wrote or affected (EntityLink), or
that a step has as its own subject (Step.entity_type/entity_id), a page at a time,
and one entity with the steps that touched it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Q, QuerySet

from traces.models import EntityCounter, EntityLink, EntityTypeCounter, Step
from traces.pagination import PAGE_SIZE, BadCursor, Page, cursors_of, keyset_page

from .runs import RUN_REF_FIELDS
from .steps import step_list_columns

LINK_ROW_FIELDS = (
    "id", "link_type", "external_id", "created_at", "step_id", "run_id",
    "step__id", "step__run_id", "step__key", "step__name", "step__status",
    "step__started_at", "step__duration_ms", "entity_type", "entity_id", "attributes",
    *(f"run__{name}" for name in RUN_REF_FIELDS),
)  # fmt: skip


# --- entities ----------------------------------------------------------------------------

LINK_VERBS = {
    EntityLink.LinkType.INPUT: "read",
    EntityLink.LinkType.OUTPUT: "written",
    EntityLink.LinkType.AFFECTED: "affected",
}


def has_page(entity_type: str, entity_id: str) -> bool:
    """Whether /entities/<type>/<id>/ can name this entity: a type holding "/" would
    be read back as a different type and id, and an empty id has no URL."""
    return bool(entity_type) and "/" not in entity_type and bool(entity_id)


def encode_entity_cursor(entity_type: str, entity_id: str) -> str:
    raw = json.dumps([entity_type, entity_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_entity_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        entity_type, entity_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadCursor() from exc
    if not all(isinstance(key, str) and "\x00" not in key for key in (entity_type, entity_id)):
        raise BadCursor()  # PostgreSQL refuses NUL in text
    return entity_type, entity_id


def entity_type_counts() -> list[dict]:
    """Entity types with their number of links and of steps having one as subject,
    most referenced first: the read model's one row per type."""
    types = [
        {"type": t.entity_type, "links": t.links, "subjects": t.subjects,
         "total": t.links + t.subjects}
        for t in EntityTypeCounter.objects.all()
    ]  # fmt: skip
    return sorted(types, key=lambda entry: (-entry["total"], entry["type"]))


@dataclass
class EntityRow:
    entity_type: str
    entity_id: str
    external_id: str = ""
    links: int = 0
    read: int = 0
    written: int = 0
    affected: int = 0
    other: int = 0
    subjects: int = 0
    runs: int = 0
    last_seen: datetime | None = None

    @property
    def linkable(self) -> bool:
        return has_page(self.entity_type, self.entity_id)

    @property
    def link_types(self) -> list[tuple[str, int]]:
        pairs = [("read", self.read), ("written", self.written), ("affected", self.affected)]
        pairs.append(("other", self.other))
        return [(verb, n) for verb, n in pairs if n]

    @classmethod
    def of(cls, counter: EntityCounter) -> EntityRow:
        return cls(
            counter.entity_type,
            counter.entity_id,
            external_id=counter.external_id,
            links=counter.links,
            read=counter.links_read,
            written=counter.links_written,
            affected=counter.links_affected,
            other=counter.links_other,
            subjects=counter.subjects,
            runs=counter.runs,
            last_seen=counter.last_seen,
        )


@dataclass
class EntityPage:
    items: list[EntityRow]
    next_cursor: str | None
    prev_cursor: str | None


def entity_page(filters: dict, size: int = PAGE_SIZE) -> EntityPage:
    """Entities (from links and from steps' own subjects) in (type, id) order, a page
    at a time (cleaned data of EntityListForm: `type`, `q`, cursors): one walk of
    the read model's (type, id) key."""
    counters = _matching(filters.get("type") or "", filters.get("q") or "")
    cursors = cursors_of(filters)
    after, before = cursors["after"], cursors["before"]
    backwards = before is not None
    cursor = decode_entity_cursor(before if backwards else after) if (after or before) else None
    if cursor:
        counters = counters.filter(_beyond(*cursor, backwards))
    order = ("-entity_type", "-entity_id") if backwards else ("entity_type", "entity_id")
    rows = [EntityRow.of(counter) for counter in counters.order_by(*order)[: size + 1]]
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    has_next = True if backwards else more
    has_prev = more if backwards else cursor is not None
    return EntityPage(
        items=rows,
        next_cursor=_cursor(rows[-1]) if rows and has_next else None,
        prev_cursor=_cursor(rows[0]) if rows and has_prev else None,
    )


def _matching(entity_type: str, q: str) -> QuerySet:
    counters = EntityCounter.objects.all()
    if entity_type:
        counters = counters.filter(entity_type=entity_type)
    if q:
        counters = counters.filter(Q(entity_id__icontains=q) | Q(external_id__icontains=q))
    return counters


def _beyond(entity_type: str, entity_id: str, backwards: bool) -> Q:
    """Keys strictly after (type, id) in the walk's order."""
    if backwards:
        return Q(entity_type__lt=entity_type) | Q(entity_type=entity_type, entity_id__lt=entity_id)
    return Q(entity_type__gt=entity_type) | Q(entity_type=entity_type, entity_id__gt=entity_id)


def _cursor(row: EntityRow) -> str:
    return encode_entity_cursor(row.entity_type, row.entity_id)


# --- one entity ------------------------------------------------------------------------


@dataclass
class EntitySummary:
    entity_type: str
    entity_id: str
    external_ids: list[str]
    links: int
    read: int  # distinct steps per link type
    written: int
    affected: int
    other: int
    subjects: int
    runs: int
    external_id: str  # the greatest, as an entities-list row has it
    last_seen: datetime | None

    @property
    def exists(self) -> bool:
        return bool(self.links or self.subjects)


def entity_summary(entity_type: str, entity_id: str) -> EntitySummary:
    """What the entity page's header says: its external ids and who touched it how."""
    counter = EntityCounter.objects.filter(entity_type=entity_type, entity_id=entity_id).first()
    if counter is None:
        counter = EntityCounter(entity_type=entity_type, entity_id=entity_id)
    # The greatest is kept: without one, the entity has none to look for.
    external_ids = _recent_external_ids(entity_type, entity_id) if counter.external_id else []
    return EntitySummary(
        entity_type,
        entity_id,
        external_ids,
        links=counter.links,
        read=counter.steps_read,
        written=counter.steps_written,
        affected=counter.steps_affected,
        other=counter.steps_other,
        subjects=counter.subjects,
        runs=counter.runs,
        external_id=counter.external_id,
        last_seen=counter.last_seen,
    )


def _recent_external_ids(entity_type: str, entity_id: str, size: int = 5) -> list[str]:
    """Up to `size` external ids of the entity's newest links, sorted: read from the
    entity's (time, id) index, not a DISTINCT over all its links (PostgreSQL walks its
    external_id index for that, 70 ms for a hot entity)."""
    links = EntityLink.objects.filter(entity_type=entity_type, entity_id=entity_id)
    newest = links.exclude(external_id="").order_by(F("seen_at").desc(nulls_last=True), "-id")
    recent = newest.values_list("external_id", flat=True)[: size * 10]
    return sorted(list(dict.fromkeys(recent))[:size])


def entity_links(entity_type: str, entity_id: str) -> QuerySet:
    """The entity's links with their step and run, ready for newest-first paging on
    `when` (the link's time, else its step's, else its run's; stored at ingest)."""
    return (
        EntityLink.objects.filter(entity_type=entity_type, entity_id=entity_id)
        .select_related("step", "run")
        .only(*LINK_ROW_FIELDS)
        .annotate(when=F("seen_at"))
    )


def subject_steps(entity_type: str, entity_id: str) -> QuerySet:
    """Steps whose own subject is the entity (Step.entity_type/entity_id), read from
    the steps-with-a-subject index (its condition said, for SQLite)."""
    return Step.objects.filter(entity_type__gt="", entity_type=entity_type, entity_id=entity_id)


def subject_step_rows(entity_type: str, entity_id: str) -> QuerySet:
    """With `when`, the step's time (else its run's), stored at ingest."""
    rows = step_list_columns(subject_steps(entity_type, entity_id))
    return rows.annotate(when=F("entity_seen_at"))


def links_page(entity_type: str, entity_id: str, filters: dict) -> Page:
    """A page of the entity's links, newest first (EntityDetailForm's `after`/`before`)."""
    rows = entity_links(entity_type, entity_id)
    return keyset_page(rows, "when", descending=True, **cursors_of(filters), size=PAGE_SIZE)


def subjects_page(entity_type: str, entity_id: str, filters: dict) -> Page:
    """A page of the steps whose subject the entity is, newest first (EntityDetailForm's
    `subject_after`/`subject_before`)."""
    rows = subject_step_rows(entity_type, entity_id)
    cursors = cursors_of(filters, "subject_")
    return keyset_page(rows, "when", descending=True, **cursors, size=PAGE_SIZE)
