"""Read queries shared by the pages, the API and the commands, one module per subject:
runs, steps (a run's tree, one step, steps across runs), timeline, critical_path, logs, errors
(failures grouped by cause), entities, files, totals and run types' trends.

They return model instances, querysets, dataclasses or plain dicts and know nothing
of HTTP. Callers name the subject: `queries.runs.filter_runs(...)`.
"""

from . import (
    compare,
    critical_path,
    entities,
    errors,
    failing,
    files,
    find,
    groups,
    logs,
    runs,
    steps,
    timeline,
    timeline_count,
    totals,
    types,
)

__all__ = [
    "compare",
    "critical_path",
    "entities",
    "errors",
    "failing",
    "files",
    "find",
    "groups",
    "logs",
    "runs",
    "steps",
    "timeline",
    "timeline_count",
    "totals",
    "types",
]
