"""Work in progress: being written now."""

from django.http import HttpResponse


def upload(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)
