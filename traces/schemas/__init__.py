"""What the JSON API answers (ninja Schemas) and the query parameters it documents.

Each object has one JSON shape, read from the model instance (or the query's row)
by the Schema itself: a run, a step, a call, a link, a log row, a file, a source,
an entity. A reference (RunRef, StepRef) is the first fields of its object's shape,
and a detail (RunDetail, StepDetail, EntityDetail) adds to its list shape, so a
field is defined once and means the same wherever it appears. The queries load
every column a shape reads (`only()`, `select_related()`, annotations), so reading
one never costs a query per row.

The query parameters are made from the pages' Django forms (`form_query`), and the
API validates `request.GET` with those same forms: a page and its API twin accept
exactly the same parameters, and the OpenAPI document says which.
"""

from .common import (
    ErrorOut,
    Progress,
    RunRef,
    StepCounts,
    StepRef,
    page_url,
    step_url,
)
from .entities import (
    EntityDetail,
    EntityItem,
    EntityLinkPage,
    EntityList,
    EntitySteps,
    EntitySubjectPage,
    EntityType,
)
from .files import (
    FileCounts,
    FileItem,
    FileList,
    FileResultOut,
    OutcomeCounts,
    PathError,
    PathReason,
    SourceIn,
    SourceList,
    SourceOut,
    SourceScan,
    UploadResult,
)
from .params import (
    CURSOR_HELP,
    form_query,
)
from .runs import (
    RunDetail,
    RunItem,
    RunList,
    StatusSummary,
)
from .search import LogHit, LogSearch, SearchCounts, SearchExact, SearchOut
from .steps import (
    CallOut,
    ErrorGroupOut,
    ErrorGroupsOut,
    LinkOut,
    LogRow,
    RunLogs,
    RunSteps,
    SparkPoint,
    StepDetail,
    StepItem,
    StepList,
    Timeline,
    TimelineRow,
)

__all__ = [
    "CURSOR_HELP",
    "CallOut",
    "EntityDetail",
    "EntityItem",
    "EntityLinkPage",
    "EntityList",
    "EntitySteps",
    "EntitySubjectPage",
    "EntityType",
    "ErrorGroupOut",
    "ErrorGroupsOut",
    "ErrorOut",
    "FileCounts",
    "FileItem",
    "FileList",
    "FileResultOut",
    "LinkOut",
    "LogHit",
    "LogRow",
    "LogSearch",
    "OutcomeCounts",
    "PathError",
    "PathReason",
    "Progress",
    "RunDetail",
    "RunItem",
    "RunList",
    "RunLogs",
    "RunRef",
    "RunSteps",
    "SearchCounts",
    "SearchExact",
    "SearchOut",
    "SourceIn",
    "SourceList",
    "SourceOut",
    "SourceScan",
    "SparkPoint",
    "StatusSummary",
    "StepCounts",
    "StepDetail",
    "StepItem",
    "StepList",
    "StepRef",
    "Timeline",
    "TimelineRow",
    "UploadResult",
    "form_query",
    "page_url",
    "step_url",
]
