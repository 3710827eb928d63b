from django.urls import path

from . import views

app_name = "traces"

urlpatterns = [
    path("", views.run_list, name="run-list"),
]
