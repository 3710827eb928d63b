"""The JSON API's endpoints, mounted at /api/ by tracer_site/api.py; who may call
them is api_auth.py's to decide, and api_errors.py turns every error into JSON.

Each endpoint is the twin of a page: it validates the query string with the
page's own Django form and reads through the same query functions
(traces/queries/), so a filter means the same thing and gives the
same numbers on both. Lists are keyset-paginated with the pages' cursors.
Endpoints return model instances (and the queries' rows); the response Schemas in
schemas.py read them, one shape per object wherever it appears.

One module per subject: runs, critical_path, exports, steps, entities, files, sources
(uploads and sources), types; common.py holds what they share.
"""

from ninja import Router

from . import compare, critical_path, entities, exports, files, runs, search, sources, steps, types
from .common import ApiBadRequest, ApiUnprocessable

__all__ = ["ApiBadRequest", "ApiUnprocessable", "router"]

router = Router()
# compare before runs: /runs/compare is not /runs/{run_id}.
MODULES = (compare, runs, critical_path, exports, steps, entities, search, files, sources, types)
for module in MODULES:
    router.add_router("", module.router)
