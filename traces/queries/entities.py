"""Entities: every business object a step read, wrote or affected (EntityLink), or
that a step has as its own subject (Step.entity_type/entity_id), a page at a time,
and one entity with the steps that touched it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import Coalesce

from traces.models import EntityLink, Step
from traces.pagination import PAGE_SIZE, BadCursor, Page, cursors_of, keyset_page

from .runs import RUN_REF_FIELDS
from .steps import step_list_columns, step_time

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
    most referenced first: two GROUP BYs walking the (entity_type, entity_id) indexes."""
    types: dict[str, dict] = {}
    links = EntityLink.objects.order_by().values_list("entity_type").annotate(n=Count("id"))
    for entity_type, n in links:
        types.setdefault(entity_type, {"type": entity_type, "links": 0, "subjects": 0})["links"] = n
    subjects = (
        Step.objects.filter(entity_type__gt="")  # a range on the index, skipping the many ""
        .order_by()
        .values_list("entity_type")
        .annotate(n=Count("id"))
    )
    for entity_type, n in subjects:
        entry = types.setdefault(entity_type, {"type": entity_type, "links": 0, "subjects": 0})
        entry["subjects"] = n
    for entry in types.values():
        entry["total"] = entry["links"] + entry["subjects"]
    return sorted(types.values(), key=lambda entry: (-entry["total"], entry["type"]))


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


@dataclass
class EntityPage:
    items: list[EntityRow]
    next_cursor: str | None
    prev_cursor: str | None


def entity_page(filters: dict, size: int = PAGE_SIZE) -> EntityPage:
    """Entities (from links and from steps' own subjects) in (type, id) order, a page
    at a time (cleaned data of EntityListForm: `type`, `q`, cursors): the keys come
    from index walks, the figures from GROUP BYs over the page's keys only."""
    entity_type, q = filters.get("type") or "", filters.get("q") or ""
    cursors = cursors_of(filters)
    after, before = cursors["after"], cursors["before"]
    backwards = before is not None
    cursor = decode_entity_cursor(before if backwards else after) if (after or before) else None
    link_keys = _entity_keys(_link_sources(entity_type, q), cursor, backwards, size)
    subject_keys = _entity_keys(_subject_sources(entity_type, q), cursor, backwards, size)
    keys = link_keys or subject_keys  # already in walk order
    if link_keys and subject_keys:
        keys = _in_database_order(set(link_keys) | set(subject_keys))
        if backwards:
            keys.reverse()
    more = len(keys) > size
    keys = keys[:size]
    if backwards:
        keys.reverse()
    rows = _entity_rows(keys)
    has_next = True if backwards else more
    has_prev = more if backwards else cursor is not None
    return EntityPage(
        items=rows,
        next_cursor=encode_entity_cursor(*keys[-1]) if keys and has_next else None,
        prev_cursor=encode_entity_cursor(*keys[0]) if keys and has_prev else None,
    )


def _link_sources(entity_type: str, q: str) -> QuerySet:
    links = EntityLink.objects.all()
    if entity_type:
        links = links.filter(entity_type=entity_type)
    if q:
        links = links.filter(Q(entity_id__icontains=q) | Q(external_id__icontains=q))
    return links


def _subject_sources(entity_type: str, q: str) -> QuerySet:
    steps = Step.objects.filter(entity_type__gt="")  # a range on the index, skipping the many ""
    if entity_type:
        steps = steps.filter(entity_type=entity_type)
    if q:
        steps = steps.filter(entity_id__icontains=q)
    return steps


def _entity_keys(rows: QuerySet, cursor, backwards: bool, size: int) -> list[tuple[str, str]]:
    if cursor:
        entity_type, entity_id = cursor
        if backwards:
            rows = rows.filter(entity_type__lte=entity_type).exclude(
                entity_type=entity_type, entity_id__gte=entity_id
            )
        else:
            rows = rows.filter(entity_type__gte=entity_type).exclude(
                entity_type=entity_type, entity_id__lte=entity_id
            )
    order = ("-entity_type", "-entity_id") if backwards else ("entity_type", "entity_id")
    keys = rows.values_list("entity_type", "entity_id").order_by(*order).distinct()
    return list(keys[: size + 1])


def _in_database_order(keys: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """The keys sorted by the database, whose collation the page cursors compare
    with (PostgreSQL's may not sort like Python)."""
    values = ", ".join(["(%s, %s)"] * len(keys))
    params = [value for key in keys for value in key]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM (VALUES {values}) AS entity_keys ORDER BY 1, 2", params)
        return [(row[0], row[1]) for row in cursor.fetchall()]


def _keys_filter(keys: list[tuple[str, str]]) -> Q:
    condition = Q(pk__in=[])
    for entity_type, entity_id in keys:
        condition |= Q(entity_type=entity_type, entity_id=entity_id)
    return condition


def _entity_rows(keys: list[tuple[str, str]]) -> list[EntityRow]:
    if not keys:
        return []
    rows = {key: EntityRow(*key) for key in keys}
    which = _keys_filter(keys)
    for stats in _link_stats(EntityLink.objects.filter(which)):
        row = rows[(stats.pop("entity_type"), stats.pop("entity_id"))]
        for name, value in stats.items():
            setattr(row, name, value)
    subjects = (
        Step.objects.filter(which)
        .order_by()
        .values_list("entity_type", "entity_id")
        .annotate(n=Count("id"), last=Max(step_time()))
    )
    for entity_type, entity_id, n, last in subjects:
        row = rows[(entity_type, entity_id)]
        row.subjects = n
        row.last_seen = _latest(row.last_seen, last)
    for key, runs in _run_counts(keys).items():
        rows[key].runs = runs
    return [rows[key] for key in keys]


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((moment for moment in (a, b) if moment is not None), default=None)


def _link_stats(links: QuerySet):
    types = list(LINK_VERBS)
    return (
        links.order_by()
        .values("entity_type", "entity_id")
        .annotate(
            links=Count("id"),
            read=Count("id", filter=Q(link_type=EntityLink.LinkType.INPUT)),
            written=Count("id", filter=Q(link_type=EntityLink.LinkType.OUTPUT)),
            affected=Count("id", filter=Q(link_type=EntityLink.LinkType.AFFECTED)),
            other=Count("id", filter=~Q(link_type__in=types)),
            external_id=Max("external_id"),
            last_seen=Max(Coalesce("created_at", "step__started_at", "run__started_at")),
        )
    )


def _run_counts(keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Distinct runs per entity over links and subject steps together: one query,
    since a run may reach an entity both ways."""
    links_table, steps_table = EntityLink._meta.db_table, Step._meta.db_table
    where = " OR ".join(["(entity_type = %s AND entity_id = %s)"] * len(keys))
    params = [value for key in keys for value in key]
    sql = (
        f"SELECT entity_type, entity_id, COUNT(DISTINCT run_id) FROM ("
        f"SELECT entity_type, entity_id, run_id FROM {links_table} WHERE {where} "
        f"UNION ALL "
        f"SELECT entity_type, entity_id, run_id FROM {steps_table} WHERE {where}"
        f") AS touched GROUP BY entity_type, entity_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params + params)
        return {(row[0], row[1]): row[2] for row in cursor.fetchall()}


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
    links = EntityLink.objects.filter(entity_type=entity_type, entity_id=entity_id)
    types = list(LINK_VERBS)
    figures = links.aggregate(
        links=Count("id"),
        read=Count("step", distinct=True, filter=Q(link_type=EntityLink.LinkType.INPUT)),
        written=Count("step", distinct=True, filter=Q(link_type=EntityLink.LinkType.OUTPUT)),
        affected=Count("step", distinct=True, filter=Q(link_type=EntityLink.LinkType.AFFECTED)),
        other=Count("step", distinct=True, filter=~Q(link_type__in=types)),
        external_id=Max("external_id"),
        last_seen=Max(Coalesce("created_at", "step__started_at", "run__started_at")),
    )
    external_ids = list(
        links.exclude(external_id="")
        .order_by("external_id")
        .values_list("external_id", flat=True)
        .distinct()[:5]
    )
    subjects = subject_steps(entity_type, entity_id).aggregate(n=Count("id"), last=Max(step_time()))
    runs = _run_counts([(entity_type, entity_id)]).get((entity_type, entity_id), 0)
    figures["external_id"] = figures["external_id"] or ""
    figures["last_seen"] = _latest(figures["last_seen"], subjects["last"])
    return EntitySummary(
        entity_type, entity_id, external_ids, subjects=subjects["n"], runs=runs, **figures
    )


def entity_links(entity_type: str, entity_id: str) -> QuerySet:
    """The entity's links with their step and run, ready for newest-first paging on
    `when` (the link's time, else its step's, else its run's)."""
    return (
        EntityLink.objects.filter(entity_type=entity_type, entity_id=entity_id)
        .select_related("step", "run")
        .only(*LINK_ROW_FIELDS)
        .annotate(when=Coalesce("created_at", "step__started_at", "run__started_at"))
    )


def subject_steps(entity_type: str, entity_id: str) -> QuerySet:
    """Steps whose own subject is the entity (Step.entity_type/entity_id)."""
    return Step.objects.filter(entity_type=entity_type, entity_id=entity_id)


def subject_step_rows(entity_type: str, entity_id: str) -> QuerySet:
    return step_list_columns(subject_steps(entity_type, entity_id)).annotate(when=step_time())


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
