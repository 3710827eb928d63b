"""Work in progress: being written now."""

from django.http import HttpResponse


def entity_list(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def entity_detail(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)
