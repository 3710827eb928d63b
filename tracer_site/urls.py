from django.contrib import admin
from django.urls import include, path

from tracer_site.api import urls as api_urls

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api_urls()),
    path("", include("traces.urls")),
]
