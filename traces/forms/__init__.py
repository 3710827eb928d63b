"""The site's forms, used by the pages and the API alike, one module per subject.

Filter forms: every filter is a query-string parameter, validated here, so a bad
value is a 400 with a message and never a 500. Then the forms that add and change
trace sources, and the upload form."""

from .compare import CompareForm
from .entities import EntityDetailForm, EntityListForm
from .files import FileFilterForm
from .runs import NewRunsForm, RunExportForm, RunFilterForm, RunPageForm, RunStepsForm
from .search import LogSearchForm, SearchForm
from .sources import SourceDeleteForm, SourceForm, SourceSettingsForm
from .steps import StepFilterForm, StepListForm
from .upload import UploadForm

__all__ = [
    "CompareForm",
    "EntityDetailForm",
    "EntityListForm",
    "FileFilterForm",
    "LogSearchForm",
    "NewRunsForm",
    "RunExportForm",
    "RunFilterForm",
    "RunPageForm",
    "RunStepsForm",
    "SearchForm",
    "SourceDeleteForm",
    "SourceForm",
    "SourceSettingsForm",
    "StepFilterForm",
    "StepListForm",
    "UploadForm",
]
