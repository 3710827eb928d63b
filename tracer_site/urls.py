from django.contrib import admin
from django.urls import include, path

from tracer_site.api import urls as api_urls

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api_urls()),
    path("", include("traces.urls")),
]

# An error raised outside a view (a middleware's, the session's save) because the
# database was busy: the busy page (503), as in a view (traces/middleware.py).
handler400 = "traces.middleware.busy_or_bad_request"
handler500 = "traces.middleware.busy_or_server_error"
