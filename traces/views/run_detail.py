"""Work in progress: being written now."""

from django.http import HttpResponse


def run_detail(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def run_tree(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def run_timeline(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def run_logs(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def step_children(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def step_detail(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)
