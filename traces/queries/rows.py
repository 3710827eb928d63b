"""Model instances for windows of rows, without Model.__init__.

Django builds each row's instance through `Model.from_db`: with deferred fields (a
step's row reads 32 of its columns) it maps the columns by a list lookup per field,
then `__init__` sets each one with setattr and sends post_init. For a timeline
window of 301 steps that is ~6 ms of a request's CPU, twice the fetch itself.
`fast_rows(queryset)` builds the same instances (the loaded columns and the
annotations in `__dict__`, a loaded `_state`), as ModelIterable does when nothing is
`select_related` and no related objects are known; otherwise it leaves the queryset
to Django.
"""

from __future__ import annotations

from operator import itemgetter

from django.db.models import QuerySet
from django.db.models.base import ModelState
from django.db.models.query import ModelIterable


class RowIterable(ModelIterable):
    """ModelIterable's instances, their fields set in `__dict__` directly."""

    def __iter__(self):
        queryset = self.queryset
        if queryset.query.select_related or queryset._known_related_objects:
            yield from super().__iter__()
            return
        db = queryset.db
        compiler = queryset.query.get_compiler(using=db)
        results = compiler.execute_sql(chunked_fetch=self.chunked_fetch, chunk_size=self.chunk_size)
        select, klass_info = compiler.select, compiler.klass_info
        model = klass_info["model"]
        fields = klass_info["select_fields"]
        names = [column[0].target.attname for column in select[fields[0] : fields[-1] + 1]]
        positions = list(range(fields[0], fields[-1] + 1))
        for name, position in (compiler.annotation_col_map or {}).items():
            names.append(name)
            positions.append(position)
        pick = itemgetter(*positions) if len(positions) > 1 else lambda row: (row[positions[0]],)
        new = model.__new__
        for row in compiler.results_iter(results):
            obj = new(model)
            values = obj.__dict__
            values.update(zip(names, pick(row), strict=True))
            state = ModelState()
            state.adding = False
            state.db = db
            values["_state"] = state
            yield obj


def fast_rows(queryset: QuerySet) -> QuerySet:
    """`queryset`, its rows built by RowIterable (kept through filter/order/slice)."""
    queryset._iterable_class = RowIterable
    return queryset
