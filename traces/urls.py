from django.urls import path

from .views import (
    compare,
    delete,
    entities,
    files,
    jobs,
    run_page,
    runs,
    search,
    sources,
    steps,
    types,
    upload,
)

app_name = "traces"

urlpatterns = [
    # Runs list and one run (views/runs.py, views/run_page.py).
    path("", runs.run_list, name="run-list"),
    path("runs/new/", runs.run_list_new, name="run-list-new"),
    path("runs/<int:run_id>/row/", runs.run_row, name="run-row"),
    path("runs/<int:run_id>/", run_page.run_detail, name="run-detail"),
    path("runs/<int:run_id>/delete/", delete.run_delete, name="run-delete"),
    path("runs/<int:run_id>/type-compare/", types.type_compare, name="run-type-compare"),
    path("runs/<int:run_id>/tree/", run_page.run_tree, name="run-tree"),
    path("runs/<int:run_id>/timeline/", run_page.run_timeline, name="run-timeline"),
    path("runs/<int:run_id>/logs/", run_page.run_logs, name="run-logs"),
    path(
        # "children" before the key, so no step key (keys may hold "/") can collide.
        "runs/<int:run_id>/children/<path:key>/",
        run_page.step_children,
        name="step-children",
    ),
    path("runs/<int:run_id>/steps/<path:key>/", run_page.step_detail, name="step-detail"),
    # Two runs compared (views/compare.py).
    path("compare/", compare.compare, name="compare"),
    # Steps across runs (views/steps.py) and entities (views/entities.py).
    path("search/", search.search_page, name="search"),
    path("logs/", search.log_search, name="log-search"),
    path("steps/", steps.step_list, name="step-list"),
    path("entities/", entities.entity_list, name="entity-list"),
    path(
        "entities/<str:entity_type>/<path:entity_id>/", entities.entity_detail, name="entity-detail"
    ),
    # Run types and their trends (views/types.py).
    path("types/", types.type_list, name="type-list"),
    path("types/<path:run_type>/", types.type_detail, name="type-detail"),
    # Files, sources and upload (views/files.py, views/sources.py, views/upload.py).
    path("files/", files.file_list, name="file-list"),
    path("files/<int:file_id>/", files.file_detail, name="file-detail"),
    path("sources/", sources.source_list, name="source-list"),
    path("sources/<int:source_id>/", sources.source_detail, name="source-detail"),
    path("sources/<int:source_id>/rescan/", sources.source_rescan, name="source-rescan"),
    path("sources/<int:source_id>/row/", sources.source_row, name="source-row"),
    path("sources/<int:source_id>/delete/", sources.source_delete, name="source-delete"),
    path("upload/", upload.upload, name="upload"),
    path("jobs/<int:job_id>/", jobs.job_detail, name="job-detail"),
]
