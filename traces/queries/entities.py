"""Read queries of the steps-across-runs page and the entity pages.

Plain functions returning querysets, dataclasses and dicts; they know nothing of
HTTP, so the API can reuse them. Every list reads a bounded window through an
index: the failed-steps page of a database with 1,000,000 steps costs what it
costs with 100.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Count, DateTimeField, Func, Max, Min, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Length, Substr, Trunc

from traces.models import EntityLink, Status, Step
from traces.pagination import BadCursor, Page, encode_cursor, keyset_page

# Distinct raw error messages one grouping reads (most frequent first): bounds the
# work and the memory whatever the number of failed steps.
ERROR_GROUP_CAP = 1000
TOP_ERROR_GROUPS = 20
# Counts above this are shown as "10,000+": an exact count of a million rows is a
# full scan for a number nobody reads digit by digit.
COUNT_CAP = 10_000
# What the table shows of an error; the step panel shows all of it.
ERROR_HEAD_CHARS = 2000
NORMALISED_MAX = 300
# The group of failed steps that carry no message at all.
NO_MESSAGE = "<no message>"

# The step table never needs the big values (input, output, attributes).
STEP_ROW_FIELDS = (
    "id", "run_id", "key", "name", "type", "status", "started_at", "duration_ms",
    "entity_type", "entity_id",
    "run__id", "run__name", "run__external_id", "run__format", "run__type", "run__status",
    "run__started_at",
)  # fmt: skip

LINK_ROW_FIELDS = (
    "id", "link_type", "external_id", "created_at", "step_id", "run_id",
    "step__id", "step__run_id", "step__key", "step__name", "step__status",
    "step__started_at", "step__duration_ms",
    "run__id", "run__name", "run__external_id", "run__status", "run__format", "run__started_at",
    "run__type",
)  # fmt: skip


# --- normalised error messages ---------------------------------------------------------

_HEX = "0-9a-fA-F"
_UNIT = "ns|us|µs|ms|s|m|h|d"
_UNIT_WORD = (
    "nanoseconds?|microseconds?|milliseconds?|seconds?|secs?|minutes?|mins?|hours?|hrs?|days?"
)
_TIMESTAMP = r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
_UUID = rf"\b[{_HEX}]{{8}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{12}}\b"
_NAMES = "(?:utf|ucs|iso|sha|md|ipv|tls|ssl|http|x86)"
_DURATION = rf"(?<![\w.])\d+(?:\.\d+)?(?:{_UNIT})(?:\d+(?:\.\d+)?(?:{_UNIT}))*\b"
# Order matters: the specific shapes first, so a UUID is not read as numbers.
_PLACEHOLDERS: list[tuple[re.Pattern, str]] = [
    # Long quoted values are data (a payload, a statement), not a cause.
    (re.compile(r'"(?:[^"\\\n]|\\.){61,}"'), '"<value>"'),
    (re.compile(r"(?<![A-Za-z])'[^'\n]{61,}'(?![A-Za-z])"), "'<value>'"),
    (re.compile(_TIMESTAMP), "<time>"),
    (re.compile(_UUID), "<id>"),
    # ULID: 26 Crockford base32 characters, with at least one digit.
    (re.compile(r"\b(?=[0-9A-HJKMNP-TV-Z]*\d)[0-9A-HJKMNP-TV-Z]{26}\b"), "<id>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (re.compile(rf"\b0x[{_HEX}]+\b"), "<id>"),
    # Hex ids (hashes, object ids): 8+ hex characters mixing digits and letters.
    (re.compile(rf"\b(?=[{_HEX}]*\d)(?=[{_HEX}]*[a-fA-F])[{_HEX}]{{8,}}\b"), "<id>"),
    # Prefixed ids: SKU-1042, tx_b337a9c51fc2, page_1 (a word, a separator, then a digit
    # somewhere), except names like utf-8 and sha-256.
    (re.compile(rf"\b(?!{_NAMES}[-_]\d)[A-Za-z]+[-_#](?=[\w-]*\d)[\w-]+", re.IGNORECASE), "<id>"),
    # Random ids: 12+ letters and digits mixed.
    (re.compile(r"\b(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{12,}\b"), "<id>"),
    (re.compile(_DURATION), "<duration>"),
    (re.compile(rf"(?<![\w.])\d+(?:\.\d+)?\s(?:{_UNIT_WORD})\b"), "<duration>"),
    # Numbers not glued to a letter: 503, 4.7.0, 10.0.0.1:5432, 1,000 (but not v2, E11000).
    (re.compile(r"(?<![A-Za-z0-9.])\d+(?:[.,:]\d+)*(?![A-Za-z0-9])"), "<n>"),
]
_WHITESPACE = re.compile(r"\s+")


def normalise_error(message: str) -> str:
    """The cause of an error message without its particulars, so failures of the same
    cause group together: `insufficient stock for sku SKU-1042: requested 3` becomes
    `insufficient stock for sku <id>: requested <n>`.

    The first line only (a Python traceback's last line, where the exception is),
    with numbers, ids (UUID, ULID, hex, prefixed like SKU-1042), e-mail addresses,
    timestamps, durations and long quoted values replaced by placeholders;
    whitespace collapsed; at most 300 characters. Short quoted names
    (`relation "facts"`) are kept: they usually name the cause.
    """
    line = _headline(message)
    for pattern, placeholder in _PLACEHOLDERS:
        line = pattern.sub(placeholder, line)
    line = _WHITESPACE.sub(" ", line).strip()
    if len(line) > NORMALISED_MAX:
        line = line[: NORMALISED_MAX - 1].rstrip() + "…"
    return line


def _headline(message: str) -> str:
    lines = [line for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1]
    return lines[0]


# --- steps across runs -----------------------------------------------------------------


def filter_steps(filters: dict, *, raw_errors: list[str] | None = None) -> QuerySet:
    """Steps matching the steps-page filters (cleaned data of StepListForm).

    `raw_errors` narrows to the exact messages of one error group (see error_groups).
    Synthetic grouping steps are left out: the source never had them.
    """
    steps = Step.objects.filter(synthetic=False)
    if filters.get("status"):
        steps = steps.filter(status=filters["status"])
    if filters.get("format"):
        steps = steps.filter(run__format=filters["format"])
    if filters.get("run_type"):
        steps = steps.filter(run__type=filters["run_type"])
    if filters.get("run"):
        steps = steps.filter(run_id=filters["run"])
    if filters.get("name"):
        lookup = "name" if filters.get("name_match") == "exact" else "name__icontains"
        steps = steps.filter(**{lookup: filters["name"]})
    if filters.get("error"):
        steps = steps.filter(error__icontains=filters["error"])
    if filters.get("since"):
        steps = steps.filter(started_at__gte=filters["since"])
    if filters.get("until"):
        steps = steps.filter(started_at__lte=filters["until"])
    if raw_errors is not None:
        steps = steps.filter(error__in=raw_errors)
    return steps


def step_list_columns(steps: QuerySet) -> QuerySet:
    """What the steps table shows: the step, its run, and the head of its error."""
    return (
        steps.select_related("run")
        .only(*STEP_ROW_FIELDS)
        .annotate(error_head=Substr("error", 1, ERROR_HEAD_CHARS), error_length=Length("error"))
    )


def newest_steps_page(
    steps: QuerySet, *, status: str = "", after=None, before=None, size: int = 50
) -> Page:
    """A page of steps newest first (started_at, then id), read from the
    (status, -started_at, -id) index.

    Without a status filter, one index walk per status, merged: still a few rows
    read per status instead of sorting every step in the database.
    """
    if status:
        return keyset_page(
            steps, "started_at", descending=True, after=after, before=before, size=size
        )
    pages = [
        keyset_page(
            steps.filter(status=value), "started_at", descending=True,
            after=after, before=before, size=size,
        )
        for value in Status.values
    ]  # fmt: skip
    return _merge_pages(pages, size=size, backwards=before is not None, had_cursor=bool(after))


def _newest_first(step) -> tuple:
    # NULL start times come last, as in the index walk.
    return (step.started_at is not None, step.started_at or datetime.min, step.pk)


def _merge_pages(pages: list[Page], *, size: int, backwards: bool, had_cursor: bool) -> Page:
    rows = sorted((row for page in pages for row in page.items), key=_newest_first, reverse=True)
    if backwards:
        more = len(rows) > size or any(page.prev_cursor for page in pages)
        rows = rows[-size:]
        has_prev, has_next = more, True
    else:
        more = len(rows) > size or any(page.next_cursor for page in pages)
        rows = rows[:size]
        has_prev, has_next = had_cursor, more
    return Page(
        items=rows,
        next_cursor=_step_cursor(rows[-1]) if rows and has_next else None,
        prev_cursor=_step_cursor(rows[0]) if rows and has_prev else None,
    )


def _step_cursor(step) -> str:
    return encode_cursor(step.started_at, step.pk)


def capped_count(queryset: QuerySet, cap: int | None = None) -> tuple[int, bool]:
    """How many rows, counting at most `cap` (and whether there are more)."""
    cap = cap or COUNT_CAP
    count = queryset.order_by().values("pk")[: cap + 1].count()
    return min(count, cap), count > cap


# --- failures grouped by normalised error ----------------------------------------------


@dataclass
class ErrorGroup:
    text: str  # the normalised message: the group's name and its URL parameter
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    raw_errors: list[str] = field(default_factory=list)  # most frequent first
    spark: list[dict] = field(default_factory=list)

    @property
    def example(self) -> str:
        return self.raw_errors[0] if self.raw_errors else ""


@dataclass
class ErrorGroups:
    groups: list[ErrorGroup]  # every group found, most frequent first
    capped: bool  # more distinct messages than ERROR_GROUP_CAP: counts are partial
    messages_read: int
    spark_unit: str = ""

    @property
    def top(self) -> list[ErrorGroup]:
        return self.groups[:TOP_ERROR_GROUPS]

    @property
    def steps_read(self) -> int:
        return sum(group.count for group in self.groups)

    def find(self, text: str) -> ErrorGroup | None:
        return next((group for group in self.groups if group.text == text), None)


def _when():
    """A step's time, or its run's when the source gives the step none."""
    return Coalesce("started_at", "run__started_at")


def error_groups(failed_steps: QuerySet, *, cap: int | None = None) -> ErrorGroups:
    """Failed steps grouped by normalised error, most frequent first.

    The database groups by the raw message (COUNT/MIN/MAX, the `cap` most frequent);
    Python merges raw messages that normalise alike. So 100,000 failed steps cost one
    aggregate query and at most `cap` rows, never 100,000 model instances.
    """
    cap = cap or ERROR_GROUP_CAP
    rows = list(
        failed_steps.order_by()
        .values("error")
        .annotate(n=Count("id"), first=Min(_when()), last=Max(_when()))
        .order_by("-n", "error")[: cap + 1]
    )
    capped = len(rows) > cap
    groups: dict[str, ErrorGroup] = {}
    for row in rows[:cap]:
        text = normalise_error(row["error"]) or NO_MESSAGE
        group = groups.setdefault(text, ErrorGroup(text=text))
        group.count += row["n"]
        group.raw_errors.append(row["error"])
        group.first_seen = _earliest(group.first_seen, row["first"])
        group.last_seen = _latest(group.last_seen, row["last"])
    ordered = sorted(groups.values(), key=lambda group: (-group.count, group.text))
    return ErrorGroups(groups=ordered, capped=capped, messages_read=min(len(rows), cap))


def _earliest(a, b):
    return b if a is None else a if b is None else min(a, b)


def _latest(a, b):
    return b if a is None else a if b is None else max(a, b)


# Sparkline buckets: the finest unit that keeps the line at most SPARK_MAX bars.
SPARK_MAX = 48
_SPARK_UNITS = (
    ("hour", timedelta(hours=1)),
    ("day", timedelta(days=1)),
    ("week", timedelta(weeks=1)),
    ("month", timedelta(days=31)),
    ("year", timedelta(days=366)),
)


def add_sparklines(result: ErrorGroups, failed_steps: QuerySet) -> None:
    """Counts over time for the top groups, in one aggregate query."""
    top = result.top
    times = [t for group in top for t in (group.first_seen, group.last_seen) if t]
    if not times:
        return
    start, end = min(times), max(times)
    unit = next((name for name, size in _SPARK_UNITS if (end - start) / size < SPARK_MAX), "year")
    raw_to_group = {raw: group for group in top for raw in group.raw_errors}
    counts = (
        failed_steps.filter(error__in=list(raw_to_group))
        .order_by()
        .values("error", bucket=_bucket(_when(), unit))
        .annotate(n=Count("id"))
    )
    per_group: dict[str, dict[datetime, int]] = {}
    for row in counts:
        if row["bucket"] is None:
            continue
        buckets = per_group.setdefault(raw_to_group[row["error"]].text, {})
        buckets[row["bucket"]] = buckets.get(row["bucket"], 0) + row["n"]
    axis = _bucket_axis(start, end, unit)
    for group in top:
        buckets = per_group.get(group.text, {})
        group.spark = [{"at": at, "n": buckets.get(at, 0)} for at in axis]
    result.spark_unit = unit


# SQLite has no date_trunc: Django's Trunc calls back into Python for every row,
# which costs seconds over 100,000 failures; strftime does it in C.
_SQLITE_BUCKETS = {
    "hour": ("%Y-%m-%d %H:00:00", ()),
    "day": ("%Y-%m-%d 00:00:00", ()),
    "week": ("%Y-%m-%d 00:00:00", ("weekday 0", "-6 days")),  # the Monday
    "month": ("%Y-%m-01 00:00:00", ()),
    "year": ("%Y-01-01 00:00:00", ()),
}


def _bucket(expression, unit: str):
    """The start of the UTC hour/day/week/month/year holding a time."""
    if connection.vendor == "sqlite":
        pattern, modifiers = _SQLITE_BUCKETS[unit]
        arguments = [Value(pattern), expression, *(Value(m) for m in modifiers)]
        return Func(*arguments, function="strftime", output_field=DateTimeField())
    return Trunc(expression, unit, tzinfo=UTC)


def _bucket_axis(start: datetime, end: datetime, unit: str) -> list[datetime]:
    """Every bucket start from start to end, as the database truncates them."""
    axis = []
    current = _truncate(start, unit)
    while current <= end and len(axis) <= SPARK_MAX * 2:
        axis.append(current)
        current = _next_bucket(current, unit)
    return axis


def _truncate(moment: datetime, unit: str) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if unit == "hour":
        return moment
    moment = moment.replace(hour=0)
    if unit == "day":
        return moment
    if unit == "week":
        return moment - timedelta(days=moment.weekday())
    moment = moment.replace(day=1)
    return moment if unit == "month" else moment.replace(month=1)


def _next_bucket(moment: datetime, unit: str) -> datetime:
    if unit in ("hour", "day", "week"):
        return moment + dict(_SPARK_UNITS)[unit]
    if unit == "month":
        return moment.replace(year=moment.year + moment.month // 12, month=moment.month % 12 + 1)
    return moment.replace(year=moment.year + 1)


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


def entity_page(
    *, entity_type: str = "", q: str = "", after=None, before=None, size: int = 50
) -> EntityPage:
    """Entities (from links and from steps' own subjects) in (type, id) order, a page
    at a time: the keys come from index walks, the figures from GROUP BYs over the
    page's keys only."""
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
        .annotate(n=Count("id"), last=Max(_when()))
    )
    for entity_type, entity_id, n, last in subjects:
        row = rows[(entity_type, entity_id)]
        row.subjects = n
        row.last_seen = _latest(row.last_seen, last)
    for key, runs in _run_counts(keys).items():
        rows[key].runs = runs
    return [rows[key] for key in keys]


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
    )
    external_ids = list(
        links.exclude(external_id="")
        .order_by("external_id")
        .values_list("external_id", flat=True)
        .distinct()[:5]
    )
    subjects = subject_steps(entity_type, entity_id).count()
    runs = _run_counts([(entity_type, entity_id)]).get((entity_type, entity_id), 0)
    return EntitySummary(
        entity_type, entity_id, external_ids, subjects=subjects, runs=runs, **figures
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
    return step_list_columns(subject_steps(entity_type, entity_id)).annotate(when=_when())


def newest_by_when(rows: QuerySet, *, after=None, before=None, size: int = 50) -> Page:
    return keyset_page(rows, "when", descending=True, after=after, before=before, size=size)
