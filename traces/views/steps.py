"""Work in progress: being written now."""

from django.http import HttpResponse


def step_list(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)
