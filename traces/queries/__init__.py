"""Read queries shared by the pages, the API and the commands, one module per subject.

They return model instances, querysets, dataclasses or plain dicts and know nothing
of HTTP. Callers name the subject: `queries.runs.filter_runs(...)`.
"""

from . import entities, runs, steps

__all__ = ["entities", "runs", "steps"]
