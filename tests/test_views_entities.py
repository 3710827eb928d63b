"""Entities (/entities/ and /entities/<type>/<id>/): types, search, keyset pages,
every step that touched an entity, ids with any character, query counts."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse

from tests.factories import BASE_TIME, count_entities, make_runs, make_steps
from traces.ingest.loader import ingest_paths
from traces.models import EntityLink, Step

pytestmark = pytest.mark.django_db
LIST = reverse("traces:entity-list")


def detail(entity_type, entity_id):
    return reverse("traces:entity-detail", args=[entity_type, entity_id])


def link(step, entity_type, entity_id, link_type="output", **fields):
    return EntityLink(
        step=step,
        run_id=step.run_id,
        link_type=link_type,
        entity_type=entity_type,
        entity_id=entity_id,
        **fields,
    )


def entity_keys(response):
    return [(row.entity_type, row.entity_id) for row in response.context["page"].items]


def row_ids(html):
    """The entity ids of the table rows, as the page shows them."""
    return [unescape(i) for i in re.findall(r'<bdi class="mono">([^<]*)</bdi></a>', html)]


# --- the list ------------------------------------------------------------------------------


def test_list_shows_the_runs_samples_entity_types_with_counts(client, samples):
    ingest_paths([samples / "runs"])
    response = client.get(LIST)
    assert response.status_code == 200
    types = {entry["type"]: entry for entry in response.context["types"]}
    assert types["transaction"]["links"] == 27
    assert types["stripe_page"]["links"] == 9
    assert types["table"]["links"] == 1
    assert types["view"]["subjects"] == 7 and types["view"]["links"] == 0
    html = response.content.decode()
    assert "<bdi>transaction</bdi> <b>27</b>" in html and "<bdi>stripe_page</bdi> <b>9</b>" in html


def test_list_rows_add_up_to_the_links_of_each_type(client, samples):
    ingest_paths([samples / "runs"])
    for entity_type, verb, total in [("transaction", "written", 27), ("stripe_page", "read", 9)]:
        rows = client.get(LIST, {"type": entity_type}).context["page"].items
        assert sum(getattr(row, verb) for row in rows) == total
        assert sum(row.links for row in rows) == total
    (table,) = client.get(LIST, {"type": "table"}).context["page"].items
    assert (table.entity_id, table.written, table.links) == ("mv_daily_revenue__new", 1, 1)


def test_list_rows_count_links_by_type_and_runs(client, samples):
    ingest_paths([samples / "runs"])
    rows = {
        (row.entity_type, row.entity_id): row
        for row in client.get(LIST, {"type": "stripe_page"}).context["page"].items
    }
    page_1 = rows[("stripe_page", "page_1")]
    assert (page_1.links, page_1.read, page_1.written, page_1.runs) == (3, 3, 0, 3)
    assert page_1.link_types == [("read", 3)]
    assert page_1.last_seen is not None
    assert sum(row.links for row in rows.values()) == 9


def test_list_merges_steps_own_subjects(client, samples):
    ingest_paths([samples / "runs"])
    rows = {row.entity_id: row for row in client.get(LIST, {"type": "view"}).context["page"].items}
    assert rows["mv_churn_cohorts"].subjects == 3 and rows["mv_churn_cohorts"].links == 0
    assert rows["mv_churn_cohorts"].runs == 1


def test_htmx_request_gets_only_the_rows(client, samples):
    ingest_paths([samples / "runs"])
    response = client.get(LIST, headers={"HX-Request": "true", "HX-Target": "entity-rows"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="entity-rows">') and "<html" not in html
    assert "tx_b337a9c51fc2" in html and 'class="pills"' not in html
    assert response["Vary"] == "HX-Request, HX-Target"


def test_type_pill_swaps_the_page_part_with_its_form(client, samples):
    ingest_paths([samples / "runs"])
    response = client.get(
        LIST, {"type": "table"}, headers={"HX-Request": "true", "HX-Target": "entity-page"}
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="entity-page">') and "<html" not in html
    assert '<input type="hidden" name="type" value="table">' in html
    assert row_ids(html) == ["mv_daily_revenue__new"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "tx_b337"}, [("transaction", "tx_b337a9c51fc2")]),
        ({"q": "ch_eyja0FMLMWplQR3JYqrpoAe4"}, [("transaction", "tx_b337a9c51fc2")]),
        ({"q": "PAGE_4"}, [("stripe_page", "page_4")]),
        ({"q": "churn"}, [("view", "mv_churn_cohorts")]),
        ({"q": "page_4", "type": "transaction"}, []),
        ({"type": "table"}, [("table", "mv_daily_revenue__new")]),
    ],
)
def test_search_matches_entity_and_external_ids(client, samples, query, expected):
    ingest_paths([samples / "runs"])
    assert entity_keys(client.get(LIST, query)) == expected


def make_entities(count):
    """`count` entities, two thirds as links and the rest as steps' own subjects."""
    run = make_runs(1)[0]
    steps = make_steps(run, count)
    links = [link(step, "order", f"o{i:04d}") for i, step in enumerate(steps) if i % 3]
    EntityLink.objects.bulk_create(links)
    subjects = [step for i, step in enumerate(steps) if not i % 3]
    for i, step in enumerate(subjects):
        step.entity_type, step.entity_id = "order", f"o{i * 3:04d}"
    Step.objects.bulk_update(subjects, ["entity_type", "entity_id"])
    count_entities()
    return [("order", f"o{i:04d}") for i in range(count)]


def test_pages_walk_every_entity_once_in_order_and_back(client):
    expected = make_entities(130)
    seen, cursor, pages = [], None, []
    while True:
        response = client.get(LIST, {"after": cursor} if cursor else {})
        pages.append(response.context["page"])
        seen.extend(entity_keys(response))
        cursor = response.context["page"].next_cursor
        if not cursor:
            break
    assert seen == expected
    assert len(pages) == 3
    back = client.get(LIST, {"before": pages[2].prev_cursor})
    assert entity_keys(back) == expected[50:100]
    assert back.context["page"].prev_cursor and back.context["page"].next_cursor


@pytest.mark.parametrize("count", [4, 150])
def test_list_query_count_does_not_grow(client, django_assert_num_queries, count):
    make_entities(count)
    # type pills, a page of the read model
    with django_assert_num_queries(2):
        client.get(LIST)
    with django_assert_num_queries(1):
        client.get(LIST, headers={"HX-Request": "true", "HX-Target": "entity-rows"})


@pytest.mark.parametrize("query", [{"after": "!!"}, {"before": "WzFd"}, {"q": "x" * 501}])
def test_bad_list_parameters_are_a_400(client, query):
    response = client.get(LIST, query)
    assert response.status_code == 400
    assert "could not be answered" in response.content.decode()


# --- one entity ----------------------------------------------------------------------------


def test_entity_page_lists_the_steps_that_read_it_with_their_runs(client, samples):
    ingest_paths([samples / "runs"])
    response = client.get(detail("stripe_page", "page_1"))
    html = response.content.decode()
    assert response.status_code == 200
    summary = response.context["summary"]
    assert (summary.read, summary.written, summary.affected, summary.runs) == (3, 0, 0, 3)
    assert "read by 3 steps" in html and "across 3 runs" in html
    links = response.context["links"].items
    assert len(links) == 3
    assert [link.when for link in links] == sorted((link.when for link in links), reverse=True)
    for entity_link in links:
        assert entity_link.link_type == "input"
        assert (
            reverse("traces:step-detail", args=[entity_link.run_id, entity_link.step.key]) in html
        )
        assert reverse("traces:run-detail", args=[entity_link.run_id]) in html
    assert ">read</span>" in html and "sync_stripe" in html


def test_entity_page_header_names_the_external_id(client, samples):
    ingest_paths([samples / "runs"])
    html = client.get(detail("transaction", "tx_b337a9c51fc2")).content.decode()
    assert "(external: " in html and "ch_eyja0FMLMWplQR3JYqrpoAe4" in html
    assert "written by 1" in html


def test_entity_page_header_names_the_external_ids_of_its_newest_links(client):
    steps = make_steps(make_runs(1)[0], 8)
    EntityLink.objects.bulk_create(
        link(step, "order", "o1", external_id=f"x-{9 - i}" if i else "",
             created_at=BASE_TIME + timedelta(minutes=i))
        for i, step in enumerate(steps)
    )  # fmt: skip
    count_entities()
    summary = client.get(detail("order", "o1")).context["summary"]
    assert summary.external_ids == ["x-2", "x-3", "x-4", "x-5", "x-6"]
    assert summary.external_id == "x-8"  # the greatest, as the list shows it


def test_entity_page_lists_steps_whose_subject_it_is(client, samples):
    ingest_paths([samples / "runs"])
    response = client.get(detail("view", "mv_churn_cohorts"))
    assert response.context["summary"].subjects == 3
    assert [step.name for step in response.context["subjects"].items] == [
        "build_view",
        "build_view",
        "plan",
    ]
    assert "subject of 3 steps" in response.content.decode()


def test_unknown_entity_is_a_404_that_says_no_step_links_to_it(client):
    response = client.get(detail("transaction", "tx_nope"))
    assert response.status_code == 404
    assert "No step links to" in response.content.decode()


def test_entity_page_htmx_parts(client):
    run = make_runs(1)[0]
    steps = make_steps(run, 60)
    EntityLink.objects.bulk_create([link(step, "order", "o1") for step in steps])
    count_entities()
    url = detail("order", "o1")
    first = client.get(url)
    cursor = first.context["links"].next_cursor
    response = client.get(
        url, {"after": cursor}, headers={"HX-Request": "true", "HX-Target": "entity-links"}
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="entity-links">') and "<html" not in html
    assert html.count("<tr data-row") == 10  # the last 10 of 60 links
    assert response["Vary"] == "HX-Request, HX-Target"


@pytest.mark.parametrize("count", [3, 120])
def test_entity_page_query_count_does_not_grow(client, django_assert_num_queries, count):
    runs = make_runs(3)
    for run in runs:
        steps = make_steps(run, count // 3 or 1)
        EntityLink.objects.bulk_create([link(step, "order", "o1") for step in steps])
        Step.objects.filter(pk=steps[0].pk).update(entity_type="order", entity_id="o1")
    count_entities()
    # summary: the read model's row (external ids: none); links and subject pages (2)
    with django_assert_num_queries(3):
        response = client.get(detail("order", "o1"))
    assert response.context["summary"].runs == 3


# --- any character in an id ----------------------------------------------------------------

AWKWARD_IDS = [
    "a/b/c",
    "ends/with/",
    "spaces and ?query=1#hash",
    "100% sure",
    "..",
    "../../admin",
    "ünïcødé ✓",
    "<script>alert(1)</script>",
    "javascript:alert(1)",
    "\u202egnp.exe",
]


@pytest.mark.parametrize("entity_id", AWKWARD_IDS)
def test_ids_with_any_character_link_to_their_page(client, entity_id):
    step = make_steps(make_runs(1)[0], 1)[0]
    link(step, "file", entity_id, link_type="input").save()
    count_entities()
    html = client.get(LIST).content.decode()
    hrefs = re.findall(r'<a data-row-link href="([^"]+)"', html)
    assert len(hrefs) == 1
    response = client.get(unescape(hrefs[0]))
    assert response.status_code == 200, hrefs[0]
    assert response.context["entity_id"] == entity_id
    assert response.context["summary"].read == 1


def test_type_with_a_slash_is_listed_without_a_link(client):
    step = make_steps(make_runs(1)[0], 1)[0]
    EntityLink.objects.create(
        step=step, run_id=step.run_id, link_type="input", entity_type="a/b", entity_id="x"
    )
    count_entities()
    response = client.get(LIST)
    assert response.status_code == 200
    assert "a/b" in response.content.decode()
    assert not re.findall(r'<a data-row-link href="', response.content.decode())


def test_hostile_ids_and_names_are_shown_as_text(client):
    run = make_runs(1, name="<script>alert(1)</script>")[0]
    step = make_steps(run, 1)[0]
    Step.objects.filter(pk=step.pk).update(name="javascript:alert(1)")
    EntityLink.objects.create(
        step=step,
        run=run,
        link_type="<i>x</i>",
        entity_type='"><svg onload=alert(4)>',
        entity_id="<script>alert(2)</script>\u202e",
        external_id="javascript:alert(3)",
        created_at=BASE_TIME + timedelta(seconds=1),
    )
    count_entities()
    pages = [
        client.get(LIST).content.decode(),
        client.get(detail('"><svg onload=alert(4)>', "<script>alert(2)</script>\u202e")),
    ]
    assert pages[1].status_code == 200
    pages[1] = pages[1].content.decode()
    for html in pages:
        assert "<script>alert" not in html and "<svg" not in html and "<i>x</i>" not in html
        assert "&quot;&gt;&lt;svg onload=alert(4)&gt;" in html
        assert "&lt;script&gt;alert(2)&lt;/script&gt;\u202e" in html
        assert 'href="javascript:' not in html
        assert "javascript:alert(3)" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]
    assert "<bdi>javascript:alert(1)</bdi>" in pages[1]
