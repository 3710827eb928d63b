"""The files list and a file's page: what each file holds, in words."""

import pytest

from traces.models import TraceFile

pytestmark = pytest.mark.django_db


def a_file(name: str, **produced) -> TraceFile:
    return TraceFile.objects.create(path=f"/traces/{name}", display_name=name, produced=produced)


def test_counts_of_one_are_singular_on_the_list_and_the_page(client):
    single = a_file("one.json", runs=1, steps=1, calls=1, links=1, logs=1)
    a_file("many.json", runs=2, steps=3)
    listing = client.get("/files/").content.decode()
    assert "1 run · 1 step<" in listing
    assert "2 runs · 3 steps<" in listing
    page = client.get(f"/files/{single.pk}/").content.decode()
    assert "1 run, 1 step, 1 call, 1 link, 1 log<" in page
