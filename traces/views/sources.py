"""Work in progress: being written now."""

from django.http import HttpResponse


def source_list(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def source_detail(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def source_rescan(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)
