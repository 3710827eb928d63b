from django.urls import path

from .views import files, runs

app_name = "traces"

urlpatterns = [
    path("", runs.run_list, name="run-list"),
    path("runs/<int:run_id>/row/", runs.run_row, name="run-row"),
    path("files/", files.file_list, name="file-list"),
    path("files/<int:file_id>/", files.file_detail, name="file-detail"),
]
