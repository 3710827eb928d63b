"""Rows to the database in bulk: ids allocated up front, values fitted to their
columns (what does not fit kept in attributes), written in batches (COPY on
PostgreSQL, executemany on SQLite) by row plans built once per process."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import operator
import re
import sqlite3
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import connection, models

from .common import json_text

BATCH_SIZE = 2000
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_ESCAPED_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")

KEY_LENGTH = 255


def fit_key(text: str, length: int = KEY_LENGTH) -> str:
    """An id as its column can hold it, still telling ids apart: NUL replaced, and
    an id past `length` cut and ended with a hash of the whole (cutting alone
    would make two ids that share their start one)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if len(text) <= length:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{text[: length - 25]}~{digest}"


_COLUMN_CACHE: dict[type, list[models.Field]] = {}


def _columns(model) -> list[models.Field]:
    if model not in _COLUMN_CACHE:
        _COLUMN_CACHE[model] = [f for f in model._meta.concrete_fields if not f.generated]
    return _COLUMN_CACHE[model]


def clean_value(column: models.Field, value: Any, attributes: dict) -> Any:
    """Fit a trace's value to its column, keeping what does not fit in attributes.

    Traces come from anywhere: a name can be 100 kB, a counter 10**30, a
    duration NaN. The database must never be the one to refuse them."""
    name = column.attname
    if value is None:
        return None if column.null else _empty(column)
    if isinstance(column, models.CharField | models.TextField):
        text = value if isinstance(value, str) else str(value)
        text = text.replace("\x00", "\ufffd")
        limit = column.max_length
        if limit and len(text) > limit:
            attributes.setdefault("full_values", {})[name] = text
            text = text[: limit - 1] + "…"
        return text
    if isinstance(column, models.BooleanField):
        return bool(value)
    if isinstance(column, models.IntegerField):
        return _fit_int(column, value, attributes)
    if isinstance(column, models.FloatField):
        return _fit_float(column, value, attributes)
    return value


def kept_as_is(column: models.Field):
    """A test of the values `clean_value` gives back unchanged, nothing noted: text
    that fits, no NUL; a flag; a number inside its column's range; no value where
    the column takes none; any value of another column (times, JSON). The writer
    calls `clean_value` only when it fails."""
    null = column.null
    if isinstance(column, models.CharField | models.TextField):
        limit = column.max_length or math.inf
        return lambda v: (
            (type(v) is str and len(v) <= limit and "\x00" not in v) or (v is None and null)
        )
    if isinstance(column, models.BooleanField):
        return lambda v: type(v) is bool
    if isinstance(column, models.IntegerField):
        low, high = INT64 if isinstance(column, models.BigIntegerField) else INT32
        return lambda v: (type(v) is int and low <= v <= high) or (v is None and null)
    if isinstance(column, models.FloatField):
        return lambda v: (type(v) is float and math.isfinite(v)) or (v is None and null)
    return lambda v: v is not None or null


def _empty(column: models.Field) -> Any:
    if column.has_default():
        return column.get_default()
    return "" if isinstance(column, models.CharField | models.TextField) else None


def _fit_int(column: models.Field, value: Any, attributes: dict) -> int | None:
    low, high = INT64 if isinstance(column, models.BigIntegerField) else INT32
    if isinstance(value, bool) or not isinstance(value, int | float):
        attributes.setdefault("unusable_values", {})[column.attname] = repr(value)[:200]
        return None if column.null else 0
    if isinstance(value, float) and not math.isfinite(value):
        attributes.setdefault("unusable_values", {})[column.attname] = repr(value)
        return None if column.null else 0
    if not low <= value <= high:
        attributes.setdefault("unusable_values", {})[column.attname] = repr(value)[:200]
        return None if column.null else 0
    return int(value)


def _fit_float(column: models.Field, value: Any, attributes: dict) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        attributes.setdefault("unusable_values", {})[column.attname] = repr(value)[:200]
        return None
    return float(value)


class IdAllocator:
    """Hands out primary keys for rows we insert ourselves (runs and steps: a
    step's parent and a call's step must be known without reading back).

    Valid inside the write transaction that the caller holds: on SQLite the
    whole database is locked for writing from BEGIN IMMEDIATE, so max(id) + 1
    onwards is ours; on PostgreSQL ids come from the table's own sequence, in
    reservations that start small and double, so one ingest of many small runs
    pays a handful of reservation queries, not one per run."""

    MAX_CHUNK = 8192

    def __init__(self, model):
        self.model = model
        self.table = model._meta.db_table
        self._next: int | None = None
        self._pool: list[int] = []
        self._chunk = 16
        self.postgres = connection.vendor == "postgresql"

    def next(self) -> int:
        if self._next is not None:
            value = self._next
            self._next += 1
            return value
        if self.postgres:
            if not self._pool:
                self._pool = self._reserve_postgres(self._chunk)
                self._chunk = min(self._chunk * 2, self.MAX_CHUNK)
            return self._pool.pop()
        self._next = self._sqlite_start() + 1
        return self._next - 1

    def _sqlite_start(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {self.table}")
            highest = cursor.fetchone()[0]
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [self.table])
            row = cursor.fetchone()
        return max(highest, row[0] if row else 0) + 1

    def _reserve_postgres(self, count: int) -> list[int]:
        # One row back (an array), not `count` rows: fetching is most of the cost.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT array_agg(nextval(pg_get_serial_sequence(%s, 'id'))) "
                "FROM generate_series(1, %s)",
                [self.table, count],
            )
            return sorted(cursor.fetchone()[0], reverse=True)


class RowPlan:
    """How records of one type become rows of one model, built once per process.

    A row is laid out as: the record's own fields (each through a cleaner made
    for its column), then the values the writer fixes (ids, positions, ...), then
    the attributes as JSON, then the defaults of the columns neither gives. The
    SQL names the columns in that order, so a row is built without a lookup.

    Most values need no cleaning: text that fits, numbers that are absent, flags
    that are flags, UTC times. Each column's usual case is checked inline in one
    generated function (`_compile_row`), its cleaner called only when the check
    fails."""

    def __init__(self, model, record_type, fixed: tuple[str, ...]):
        self.postgres = connection.vendor == "postgresql"
        columns = {column.attname: column for column in _columns(model)}
        on_record = {f.name for f in dataclasses.fields(record_type)}
        given = set(fixed) | {"attributes"}
        from_record = [c for n, c in columns.items() if n in on_record and n not in given]
        left = [c for n, c in columns.items() if n not in on_record and n not in given]
        # A model's id the writer does not fix is the database's to give.
        left = [c for c in left if not c.primary_key]
        order = [*from_record, *(columns[n] for n in fixed), columns["attributes"], *left]
        self.fixed_at = {name: len(from_record) + i for i, name in enumerate(fixed)}
        # Where each column's value is in a row.
        self.at = {c.attname: i for i, c in enumerate(order)}
        names = [c.attname for c in from_record]
        self.get = operator.attrgetter(*names) if len(names) > 1 else _one_of(names)
        self.cleaners = [_cleaner(c, self.postgres) for c in from_record]
        self.adapt_json = _json_adapter()
        self.defaults = [_adapted_default(c, self.adapt_json) for c in left]
        quoted = ", ".join(connection.ops.quote_name(c.column) for c in order)
        table = model._meta.db_table
        self.sql = f"INSERT INTO {table} ({quoted}) VALUES ({', '.join(['%s'] * len(order))})"
        self.copy_sql = f"COPY {table} ({quoted}) FROM STDIN"
        self._compile_row(from_record)

    def _compile_row(self, from_record: list[models.Field]) -> None:
        """`row()` as one generated function: each column's usual case (text that
        fits, no number, a flag, a UTC time on SQLite, a JSON value) checked
        inline, its cleaner called only when the check fails. A call per column
        cost more than the rest of a row.

        Cleaners run in the order the groups always ran in (texts, numbers,
        flags, then the others), so what they keep in attributes comes out in
        the same order."""
        texts, numbers, flags, others = [], [], [], []
        for index, column in enumerate(from_record):
            if self.cleaners[index] is _keep:
                continue
            if column.attname == "key":
                others.append(index)
            elif isinstance(column, models.CharField | models.TextField):
                texts.append(index)
            elif isinstance(column, models.IntegerField | models.FloatField) and column.null:
                numbers.append(index)
            elif isinstance(column, models.BooleanField):
                flags.append(index)
            else:
                others.append(index)
        names = {
            "_UTC": UTC, "_datetime": datetime, "_dumps": _dumps, "_dump": dump_json,
            "_utc_text": _sqlite_utc_text, "_INF": math.inf, "_NON_STR_KEYS": _NON_STR_KEYS,
            "_default": _json_default, "_JSON_ERRORS": (TypeError, orjson.JSONEncodeError),
        }  # fmt: skip
        lines = []
        for index in texts:
            names[f"_c{index}"] = self.cleaners[index]
            limit = from_record[index].max_length
            fits = f" and len(v{index}) <= {limit}" if limit else ""
            lines.append(
                f"if not (type(v{index}) is str{fits} and '\\x00' not in v{index}): "
                f"v{index} = _c{index}(v{index}, attributes)"
            )
        for index in numbers:
            names[f"_c{index}"] = self.cleaners[index]
            usual, low, high = _number_range(from_record[index])
            lines.append(
                f"if v{index} is not None and not (type(v{index}) is {usual} and "
                f"{low} < v{index} < {high}): v{index} = _c{index}(v{index}, attributes)"
            )
        for index in flags:
            names[f"_c{index}"] = self.cleaners[index]
            lines.append(
                f"if type(v{index}) is not bool: v{index} = _c{index}(v{index}, attributes)"
            )
        for index in others:
            column, clean = from_record[index], self.cleaners[index]
            names[f"_c{index}"] = clean
            if column.attname == "key":
                lines.append(
                    f"if not (type(v{index}) is str and len(v{index}) <= {column.max_length} "
                    f"and '\\x00' not in v{index}): v{index} = _c{index}(v{index}, attributes)"
                )
            elif isinstance(column, models.JSONField):
                lines.append(f"if v{index} is not None:")
                lines += [f"    {line}" for line in _dump_lines(f"v{index}", f"v{index}")]
            elif clean is _sqlite_datetime:
                lines.append(
                    f"if v{index} is not None: v{index} = "
                    f"_dumps(v{index})[1:-7].decode().replace('T', ' ', 1) "
                    f"if v{index}.tzinfo is _UTC and type(v{index}) is _datetime "
                    f"else _utc_text(v{index})"
                )
            else:
                lines.append(f"v{index} = _c{index}(v{index}, attributes)")
        values = [f"v{index}" for index in range(len(from_record))]
        names["_get"], names["_defaults"] = self.get, self.defaults
        unpack = f"{', '.join(values)}, = _get(record)" if values else "_get(record)"
        body = "\n    ".join([unpack, *lines])
        source = (
            f"def row(record, attributes, fixed):\n    {body}\n"
            f"    row = [{', '.join(values)}]\n"
            "    row += fixed\n"
            "    # Cleaners may have added to attributes, so they are dumped last.\n"
            + "".join(f"    {line}\n" for line in _dump_lines("_attributes", "attributes"))
            + "    row.append(_attributes)\n"
            "    row += _defaults\n"
            "    return row\n"
        )
        exec(compile(source, f"<row plan {self.sql[:40]}...>", "exec"), names)
        self.row = names["row"]
        self.source = source

    def write(self, rows: list[list]) -> None:
        if not rows:
            return
        with connection.cursor() as cursor:
            if self.postgres:
                copy_rows(cursor, self.copy_sql, rows)
            else:
                cursor.executemany(self.sql, rows)


def copy_rows(cursor, sql: str, rows) -> None:
    """PostgreSQL: rows in by COPY (`sql`: `COPY table (columns) FROM STDIN`), ~1 µs a
    row against 20-35 µs for executemany (bench_pg_insert.py). JSON columns take
    their text; row triggers fire as for an INSERT."""
    with cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)


_PLANS: dict[tuple, RowPlan] = {}


def row_plan(model, record_type, fixed: tuple[str, ...]) -> RowPlan:
    key = (model, record_type, fixed, connection.vendor)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = RowPlan(model, record_type, fixed)
    return plan


class RowBuffers:
    """Rows of several plans, each written BATCH_SIZE at a time and the rest when
    flushed: the rows of many small runs go in together (one COPY or executemany
    a batch, not one a run). This is the hot loop of every ingest."""

    def __init__(self):
        self.rows: dict[RowPlan, list[list]] = {}
        # The plans of this database, and its datetime parameters: found once, not
        # for each run (`connection.vendor` is a look-up through the connection
        # handler's thread-local, µs each).
        self._plans: dict[tuple, RowPlan] = {}
        self.db_time = time_adapter()

    def plan(self, model, record_type, fixed: tuple[str, ...]) -> RowPlan:
        """`row_plan(...)` for this buffer's database."""
        key = (model, record_type, fixed)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = row_plan(model, record_type, fixed)
        return plan

    def add(self, plan: RowPlan, row: list) -> None:
        rows = self.rows.get(plan)
        if rows is None:
            rows = self.rows[plan] = []
        rows.append(row)
        if len(rows) >= BATCH_SIZE:
            plan.write(rows)
            self.rows[plan] = []

    def extend(self, plan: RowPlan, rows: list[list]) -> None:
        for row in rows:
            self.add(plan, row)

    def flush(self) -> None:
        for plan, rows in self.rows.items():
            plan.write(rows)
        self.rows.clear()


class InstancePlan:
    """Model instances as plain INSERTs, their SQL and adapters built once per
    process: the ORM's save() compiles its INSERT anew each time, which costs
    more than the run's rows when a run has ten steps.

    Rows go in together, not one execution each by executemany: on SQLite several
    to a statement (`INSERT ... VALUES (...), (...)`), so a run's FTS5 insert
    trigger writes its pending index entries out once a statement instead of once
    a run (75 → 23 µs a run); on PostgreSQL by COPY, as the children's rows
    (bench/RESULTS.md §16e)."""

    # Rows in one statement: a power of two, and a shorter remainder split into
    # powers of two, so a model has at most 8 statements' texts to prepare.
    MAX_ROWS = 128

    def __init__(self, model):
        self.postgres = postgres = connection.vendor == "postgresql"
        columns = _columns(model)
        self.attnames = [c.attname for c in columns]
        self.adapters = [_instance_adapter(c, postgres) for c in columns]
        marks = [
            "%s::jsonb" if postgres and isinstance(c, models.JSONField) else "%s" for c in columns
        ]
        quoted = ", ".join(connection.ops.quote_name(c.column) for c in columns)
        self.one_row = f"({', '.join(marks)})"
        self.sql = f"INSERT INTO {model._meta.db_table} ({quoted}) VALUES {self.one_row}"
        self._sql_of: dict[int, str] = {}
        # COPY reads a JSON column's text as jsonb itself (the adapters give text).
        self.copy_sql = f"COPY {model._meta.db_table} ({quoted}) FROM STDIN"

    def insert(self, instances: list) -> None:
        """Insert `instances` (in order), their primary keys already set."""
        pairs = list(zip(self.adapters, self.attnames, strict=True))
        self.insert_rows(
            [[adapt(getattr(instance, name)) for adapt, name in pairs] for instance in instances]
        )
        for instance in instances:
            instance._state.adding = False
            instance._state.db = connection.alias

    def insert_rows(self, rows: list[list]) -> None:
        """Insert rows of adapted values (`adapters` applied), in order."""
        with connection.cursor() as cursor:
            if self.postgres:
                copy_rows(cursor, self.copy_sql, rows)
                return
            # No more variables in a statement than this SQLite allows (32,766 by
            # default; a build may allow as few as 999).
            limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            most = min(self.MAX_ROWS, max(limit // len(self.attnames), 1))
            start = 0
            while start < len(rows):
                size = 1 << (min(most, len(rows) - start).bit_length() - 1)
                chunk = rows[start : start + size]
                cursor.execute(self._sql(size), [value for row in chunk for value in row])
                start += size

    def _sql(self, rows: int) -> str:
        sql = self._sql_of.get(rows)
        if sql is None:
            sql = self._sql_of[rows] = ", ".join([self.sql, *[self.one_row] * (rows - 1)])
        return sql


_INSTANCE_PLANS: dict[tuple, InstancePlan] = {}


def insert_instances(instances: list) -> None:
    """Insert model instances of one model (their primary keys set), several a statement."""
    if not instances:
        return
    key = (type(instances[0]), connection.vendor)
    plan = _INSTANCE_PLANS.get(key)
    if plan is None:
        plan = _INSTANCE_PLANS[key] = InstancePlan(type(instances[0]))
    plan.insert(instances)


def _instance_adapter(column: models.Field, postgres: bool):
    if isinstance(column, models.JSONField):
        return _json_adapter()
    if isinstance(column, models.DateTimeField):
        return _identity if postgres else _sqlite_datetime_value
    if isinstance(column, models.DateField | models.DecimalField | models.UUIDField):
        return lambda value: column.get_db_prep_save(value, connection)
    return _identity


def _identity(value):
    return value


def time_adapter():
    """A datetime as a parameter of this database, Django's
    `adapt_datetimefield_value` (SQLite: naive UTC text; PostgreSQL: the value)
    without its connection look-up and settings read for every value."""
    return _sqlite_datetime_value if connection.vendor == "sqlite" else _identity


def _sqlite_datetime_value(value):
    return _sqlite_datetime(value, None)


def _one_of(names: list[str]):
    if not names:
        return lambda record: ()
    getter = operator.attrgetter(names[0])
    return lambda record: (getter(record),)


def _adapted_default(column: models.Field, adapt_json) -> Any:
    value = _empty(column)
    return adapt_json(value) if isinstance(column, models.JSONField) else value


def _cleaner(column: models.Field, postgres: bool):
    if column.attname == "key":
        return _key_cleaner(column)
    if isinstance(column, models.JSONField):
        return _json_cleaner(_json_adapter())
    if isinstance(column, models.DateTimeField):
        return _keep if postgres else _sqlite_datetime
    if isinstance(column, models.CharField | models.TextField):
        return _text_cleaner(column)
    if isinstance(column, models.BooleanField):
        return _bool_cleaner(column)
    if isinstance(column, models.IntegerField | models.FloatField):
        return _number_cleaner(column)

    def clean(value, attributes):
        return clean_value(column, value, attributes)

    return clean


def _keep(value, attributes):
    return value


def _json_cleaner(adapt):
    def clean(value, attributes):
        return adapt(value)

    return clean


def _bool_cleaner(column: models.Field):
    default = _empty(column)

    def clean(value, attributes):
        return default if value is None else bool(value)

    return clean


def _dump_lines(target: str, value: str) -> list[str]:
    """Source of `target = dump_json(value)` with its usual case inline (orjson
    writes the value, no NUL escaped in it): no call a JSON value."""
    return [
        f"try: _b = _dumps({value}, option=_NON_STR_KEYS, default=_default)",
        f"except _JSON_ERRORS: {target} = _dump({value})",
        f"else: {target} = _dump({value}) if {_NUL!r} in _b else _b.decode()",
    ]


def _number_range(column: models.Field) -> tuple[str, str, str]:
    """(type, low, high) of a number column's usual values, as source for `_compile_row`:
    a float strictly between the infinities (so not NaN), an int strictly inside its range."""
    if isinstance(column, models.FloatField):
        return "float", "-_INF", "_INF"
    low, high = INT64 if isinstance(column, models.BigIntegerField) else INT32
    return "int", str(low), str(high)


def _number_cleaner(column: models.Field):
    """`clean_value` for a number column, its common cases (none, a plain int that
    fits, a finite float) without the type tests."""
    empty = None if column.null else _empty(column)
    if isinstance(column, models.FloatField):
        usual, low, high = float, -math.inf, math.inf
    else:
        usual = int
        low, high = INT64 if isinstance(column, models.BigIntegerField) else INT32

    def clean(value, attributes):
        if value is None:
            return empty
        if type(value) is usual and low < value < high:
            return value
        return clean_value(column, value, attributes)

    return clean


def _key_cleaner(column: models.Field):
    """A step's or call's key: unique in its run, so cut with `fit_key`, never `…`."""
    length = column.max_length

    def clean(value, attributes):
        text = value if type(value) is str else str(value)
        if len(text) <= length and "\x00" not in text:
            return text
        fitted = fit_key(text, length)
        if fitted != text:
            attributes.setdefault("full_values", {})["key"] = text
        return fitted

    return clean


def _text_cleaner(column: models.Field):
    name, limit, null = column.attname, column.max_length, column.null

    def clean(value, attributes):
        if value is None:
            return None if null else ""
        if type(value) is not str:
            value = str(value)
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        if limit and len(value) > limit:
            attributes.setdefault("full_values", {})[name] = value
            value = value[: limit - 1] + "…"
        return value

    return clean


def _sqlite_datetime(value, attributes):
    """What Django's SQLite backend stores: naive UTC text."""
    if value is None:
        return None
    return _sqlite_utc_text(value)


def _sqlite_utc_text(value):
    if value.tzinfo is UTC and type(value) is datetime:
        # orjson writes what isoformat does, in a third of its time:
        # b'"2026-03-02T05:40:00.123000+00:00"' (tested equal).
        return _dumps(value)[1:-7].decode().replace("T", " ", 1)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ")


def _json_adapter():
    """JSON values as text: SQLite stores it, and PostgreSQL's COPY reads jsonb
    from its text (no Python-side `Jsonb` wrapper needed)."""

    def adapt_text(value):
        return None if value is None else dump_json(value)

    return adapt_text


_dumps, _NON_STR_KEYS = orjson.dumps, orjson.OPT_NON_STR_KEYS
_NUL = b"\\u0000"  # NUL as JSON escapes it


def dump_json(value: Any) -> str:
    """JSON text any database accepts: no NUL characters (PostgreSQL refuses
    them), no lone surrogates, NaN as null."""
    try:
        data = _dumps(value, option=_NON_STR_KEYS, default=_json_default)
    except (TypeError, orjson.JSONEncodeError) as exc:  # big integers, lone surrogates, depth
        try:
            if "Recursion" in str(exc):
                raise RecursionError from exc
            text = json.dumps(value, default=_json_default, ensure_ascii=False)
        except RecursionError:
            # Nested deeper than JSON readers go (orjson: 254 levels, Python's json
            # about 1000): kept as its JSON text, a string every reader can load.
            text = json.dumps(json_text(value, ascii_only=False), ensure_ascii=False)
        data = text.encode("utf-8", errors="replace")
    if _NUL in data:
        data = _ESCAPED_NUL.sub(rb"\1\\ufffd", data)
    return data.decode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
