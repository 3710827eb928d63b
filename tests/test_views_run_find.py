"""Find in run (`?find=` on the run page, its tree and timeline, and the API's run
steps): matches found through the full-text index however deep they are, shown
under their ancestors, counted, windowed, escaped; bad finds are 400s."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.db import connection
from django.urls import reverse
from django.utils.html import escape

from tests.factories import make_runs, make_steps
from traces.ingest.loader import ingest_paths
from traces.models import Run, Status, Step
from traces.queries import find as found
from traces.search.index import index_runs
from traces.search.query import value_words

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true", "HX-Target": "run-tabs"}


# --- data ---------------------------------------------------------------------------------


def deep_run(depth: int = 30, siblings: int = 200, matches: int = 3, hostile: str = "") -> Run:
    """A chain `depth` steps deep, `siblings` plain steps beside each of its first
    levels, and `matches` steps named `needle_<i>` at the bottom: what a find must
    reach inside collapsed subtrees. Written in one batch and indexed as the store
    indexes a run (ids in seq order), its range of ids noted as the store notes it."""
    run = make_runs(1, name="deep")[0]
    seq = 0
    rows: list[Step] = []
    next_id = (Step.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1

    def add(parent, position, name, depth_, status="succeeded", error=""):
        nonlocal seq, next_id
        seq += 1
        step = Step(
            id=next_id, run=run, parent_id=parent.pk if parent else None, key=f"k{seq}",
            seq=seq, position=position, depth=depth_, name=name, type="exec", status=status,
            error=error, failed_subtree=status == "failed",
        )  # fmt: skip
        next_id += 1
        rows.append(step)
        return step

    parent = None
    for level in range(depth):
        chain = add(parent, 0, f"level {level}", level)
        if parent is not None:
            parent.child_count = 1 + (siblings if level <= 3 else 0)
        for position in range(1, 1 + (siblings if level < 3 else 0)):
            add(parent, position, f"plain {level}.{position}", level)
        parent = chain
    parent.child_count = matches
    for position in range(matches):
        add(parent, position, f"needle_{position}{hostile}", depth, "failed", "boom: rate limit")
    for step in rows:
        step.child_count = step.child_count or 0
    # Ancestors of a failure hold it (failed_subtree), as the store keeps them.
    by_id = {step.pk: step for step in rows}
    for step in rows:
        if step.status == "failed":
            up = by_id.get(step.parent_id)
            while up is not None:
                up.failed_subtree = True
                up = by_id.get(up.parent_id)
    Step.objects.bulk_create(rows)
    Run.objects.filter(pk=run.pk).update(
        step_count=len(rows), steps_failed=matches, max_depth=depth,
        step_id_min=rows[0].pk, step_id_max=rows[-1].pk,
    )  # fmt: skip
    with connection.cursor() as cursor:
        index_runs(cursor, [run.pk])
    return Run.objects.get(pk=run.pk)


def tokens_of(*texts: str) -> list[str]:
    return found.TOKEN.findall(" ".join(text[:4096] for text in texts).lower())


def page(client, run: Run, **params):
    return client.get(f"{reverse('traces:run-detail', args=[run.pk])}?{urlencode(params)}")


def classes_of(html: str, cls: str) -> list[str]:
    return re.findall(rf'<li class="tree-item[^"]*\b{cls}\b[^"]*" id="node-(\d+)"', html)


# --- the find's words ---------------------------------------------------------------------


def test_a_find_is_words_and_statuses():
    find = found.parse('upsert_batch "Rate  limit" 01M3250Z* status:FAILED')
    assert find.phrases == (("upsert", "batch"), ("rate", "limit"), ("01m3250z",))
    assert find.prefixes == (False, False, True)
    assert find.statuses == ("failed",)
    assert found.fts5_query(find) == '"upsert batch" AND "rate limit" AND "01m3250z" *'
    assert found.pg_tsquery(find) == "(upsert <-> batch) & (rate <-> limit) & (01m3250z:*)"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("status:nope", "not a status"),
        ("!!! ---", "nothing to find"),
        ("x" * 201, "at most 200"),
        (" ".join(f"w{i}" for i in range(9)), "at most 8 words"),
        ("a\x00b", "NUL"),
    ],
)
def test_a_find_that_names_nothing_is_refused(text, says):
    with pytest.raises(found.BadFind, match=says):
        found.parse(text)


# --- the tree -----------------------------------------------------------------------------


def test_a_deep_match_is_shown_under_all_its_ancestors(client):
    run = deep_run(depth=30)
    response = page(client, run, find="needle_1")
    html = response.content.decode()
    assert response.status_code == 200
    assert "1 match<" in html
    needle = Step.objects.get(run=run, name="needle_1")
    assert classes_of(html, "find-match") == [str(needle.pk)]
    chain = Step.objects.filter(run=run, name__startswith="level ").order_by("depth")
    assert classes_of(html, "find-context") == [str(step.pk) for step in chain]
    # The 600 plain steps beside the chain are left out; each level says how to see them.
    assert "plain 1.1" not in html
    assert "show all its 201 steps" in html
    # The input keeps the find, and the tab links and pills keep it too.
    assert 'value="needle_1"' in html
    assert html.count("find=needle_1") >= 4


def test_the_box_and_its_buttons_are_one_group_that_wraps_whole(client):
    """The box, "↑" and "↓" in one .find-box (find.css keeps it on one line: on a
    phone "↓" dropped to the next line beside the count), the status after it."""
    run = deep_run(depth=3, matches=2)
    html = page(client, run, find="needle").content.decode()
    group = html[html.index('<span class="find-box">') :]
    group = group[: group.index("</span>")]
    assert group.count('id="run-find"') == 1
    assert 'aria-label="Previous match"' in group and 'aria-label="Next match"' in group
    assert group.index("Previous match") < group.index("Next match")
    assert 'id="find-status"' not in group


def test_the_find_is_kept_in_the_url_of_each_match_link(client):
    run = deep_run(depth=3, matches=2)
    html = page(client, run, find="needle").content.decode()
    assert re.search(r'href="/runs/\d+/steps/k\d+/\?find=needle"', html)


@pytest.mark.parametrize("noted", [True, False], ids=["noted ids", "ids read"])
def test_words_match_whole_words_and_a_star_their_start(client, noted):
    """The same, whether the run's noted range of step ids bounds the lookups (a Run
    given) or its ids are read from its steps (its id given)."""
    deep = deep_run(depth=4, matches=5)
    run = deep if noted else deep.pk
    assert found.count(run, found.parse("needle")) == (5, False)
    assert found.count(run, found.parse("needl")) == (0, False)
    assert found.count(run, found.parse("needl*")) == (5, False)
    assert found.count(run, found.parse("needle 3")) == (1, False)
    assert found.count(run, found.parse('"rate limit"')) == (5, False)
    assert found.count(run, found.parse("limit rate")) == (5, False)
    assert found.count(run, found.parse('"limit rate"')) == (0, False)
    assert found.count(run, found.parse("k3")) == (1, False)  # a key
    assert found.count(run, found.parse("status:failed")) == (5, False)
    assert found.count(run, found.parse("level status:failed")) == (0, False)
    assert found.count(run, found.parse("level")) == (4, False)
    if noted:  # a Run read without its noted ids is looked in as by its id, no query more
        partial = Run.objects.only("id").get(pk=deep.pk)
        assert found.scope(partial) == found.Scope(deep.pk)


def test_a_find_stays_in_its_run(client):
    one, other = deep_run(depth=3, matches=2), deep_run(depth=3, matches=7)
    assert found.count(one.pk, found.parse("needle")) == (2, False)
    assert found.count(other.pk, found.parse("needle")) == (7, False)
    html = page(client, one, find="needle").content.decode()
    assert len(classes_of(html, "find-match")) == 2


def test_matches_come_a_window_at_a_time_numbered(client):
    run = deep_run(depth=3, matches=120)
    html = page(client, run, find="needle").content.decode()
    assert "120 matches" in html
    assert len(classes_of(html, "find-match")) == found.FIND_WINDOW
    assert "Matches 1–50" in html  # noqa: RUF001
    next_url = re.search(r'href="([^"]+)"[^>]*data-find-page="1"', html)[1].replace("&amp;", "&")
    assert parse_qs(urlsplit(next_url).query)["find_at"] == ["50"]
    second = client.get(next_url).content.decode()
    assert "Matches 51–100" in second  # noqa: RUF001
    first_ids = set(classes_of(html, "find-match"))
    second_ids = set(classes_of(second, "find-match"))
    assert len(second_ids) == 50 and not first_ids & second_ids
    prev_url = re.search(r'href="([^"]+)"[^>]*data-find-page="-1"', second)[1].replace("&amp;", "&")
    assert set(classes_of(client.get(prev_url).content.decode(), "find-match")) == first_ids


def test_queries_do_not_grow_with_the_matches(client, django_assert_max_num_queries):
    few, many = deep_run(depth=12, matches=3), deep_run(depth=12, matches=400)
    counts = []
    for run in (few, many):
        with django_assert_max_num_queries(12) as captured:
            response = page(client, run, find="needle")
        assert response.status_code == 200
        counts.append(len(captured))
    assert counts[0] == counts[1]


def test_a_hostile_name_is_escaped(client):
    hostile = '<script>alert("x")</script>'
    run = deep_run(depth=2, matches=1, hostile=hostile)
    html = page(client, run, find="needle_0 script").content.decode()
    assert hostile not in html
    assert escape(hostile) in html
    html = page(client, run, find='<img src=x onerror="1">').content.decode()
    assert "<img src=x" not in html


def test_no_match_says_so(client):
    run = deep_run(depth=2, matches=1)
    html = page(client, run, find="nowhere").content.decode()
    assert "no step matches" in html
    assert "No step of this run matches" in html


@pytest.mark.parametrize(
    "params",
    [
        {"find": "status:nope"},
        {"find": "!!!"},
        {"find": "x" * 201},
        {"find": "needle", "after": "not-a-cursor"},
        {"find": "needle", "find_at": "-1"},
        {"find": "needle", "tab": "timeline", "after": "eyJ4Ijox"},
    ],
)
def test_a_bad_find_is_a_400(client, params):
    run = deep_run(depth=2, matches=1)
    assert page(client, run, **params).status_code == 400
    response = client.get(
        f"{reverse('traces:run-detail', args=[run.pk])}?{urlencode(params)}", headers=HX
    )
    assert response.status_code == 400
    assert response["HX-Retarget"] == "#flash"


def test_an_htmx_find_swaps_the_tabs(client):
    run = deep_run(depth=3, matches=2)
    response = client.get(
        f"{reverse('traces:run-detail', args=[run.pk])}?find=needle&tab=tree", headers=HX
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="run-tabs"')
    assert "2 matches" in html


def test_failed_only_and_a_find_together(client):
    run = deep_run(depth=3, matches=2)
    html = page(client, run, find="level", failed="1").content.decode()
    # The chain's levels hold the failures: kept.
    assert len(classes_of(html, "find-match")) == 3


# --- the timeline -------------------------------------------------------------------------


def test_the_timeline_highlights_matches_and_can_show_only_them(client):
    run = deep_run(depth=3, siblings=100, matches=4)
    html = page(client, run, tab="timeline", find="needle").content.decode()
    assert len(re.findall(r'class="timeline-row [^"]*find-match', html)) == 0  # past the window
    assert "0 of the steps below match" in html
    html = page(client, run, tab="timeline", find="needle", only="1").content.decode()
    rows = re.findall(r'class="timeline-row ([^"]*)"', html)
    assert len(rows) == 4 and all("find-match" in row for row in rows)
    html = page(client, run, tab="timeline", find="plain").content.decode()
    marked = re.findall(r'class="timeline-row [^"]*(find-match|find-other)', html)
    in_window = Step.objects.filter(run=run, seq__lte=300, name__startswith="plain").count()
    assert marked.count("find-match") == in_window > 200 and "find-other" in marked


def test_a_timed_runs_timeline_highlights_matches_keeps_the_find_and_shows_only_them(
    client, samples
):
    """A run with step times has the zoomable timeline: the find must mark its rows,
    survive a zoom and filter with only=1 there too (not only in run-order windows)."""
    ingest_paths([samples])
    run = Run.objects.get(format="runs", status="failed", type="sync_stripe")
    html = page(client, run, tab="timeline", find="upsert_batch").content.decode()
    rows = re.findall(r'class="timeline-row ([^"]*)"', html)
    assert len(rows) == run.step_count == 7
    assert sum("find-match" in row for row in rows) == 4
    assert sum("find-other" in row for row in rows) == 3
    assert "4 of the steps below match; the others are dimmed." in html
    zoom_in = re.search(r'<a class="button" href="([^"]*)"[^>]*data-zoom="in"', html)[1]
    assert "find=upsert_batch" in zoom_in and "from_ms=" in zoom_in
    zoomed = client.get(zoom_in.replace("&amp;", "&")).content.decode()
    assert "find-match" in zoomed
    html = page(client, run, tab="timeline", find="upsert_batch", only="1").content.decode()
    rows = re.findall(r'class="timeline-row ([^"]*)"', html)
    assert len(rows) == 4 and all("find-match" in row for row in rows)
    assert "Only the matching steps." in html


# --- the samples of every format ----------------------------------------------------------


def test_every_samples_step_is_found_by_its_name_and_key_under_its_ancestors(client, samples):
    report = ingest_paths([samples])
    assert report.failed == []
    checked = set()
    for run in Run.objects.all():
        deepest = Step.objects.filter(run=run).exclude(name="").order_by("-depth", "seq").first()
        if deepest is None:
            continue
        html = page(client, run, find=deepest.key).content.decode()
        assert str(deepest.pk) in classes_of(html, "find-match"), (run.format, deepest.key)
        chain = []
        parent_id = deepest.parent_id
        while parent_id:
            chain.append(str(parent_id))
            parent_id = Step.objects.get(pk=parent_id).parent_id
        shown = set(classes_of(html, "find-context")) | set(classes_of(html, "find-match"))
        assert set(chain) <= shown
        words = found.TOKEN.findall(deepest.name)
        if words:
            text = " ".join(words)
            # The values of its attributes and input are searched too (issue 15).
            expected = sum(
                1
                for name, key, type_, error, attributes, input_ in Step.objects.filter(
                    run=run
                ).values_list("name", "key", "type", "error", "attributes", "input")
                if all(
                    word.lower()
                    in tokens_of(name, key, type_, error, *value_words([attributes, input_]))
                    for word in words
                )
            )
            count = found.count(run.pk, found.parse(text))[0]
            assert count >= 1
            # Each word anywhere in the step is at least as many as the phrase.
            assert count <= expected, (run.format, text)
        failed = Step.objects.filter(run=run, status=Status.FAILED).count()
        assert found.count(run.pk, found.parse("status:failed")) == (failed, False)
        checked.add(run.format)
    assert checked >= {"duckflux", "greentic", "traceos", "runs", "workflow", "otlp"}


# --- the API ------------------------------------------------------------------------------


def test_the_api_finds_with_ancestors_and_a_count(client):
    run = deep_run(depth=5, matches=60)
    url = reverse("api:run_steps", args=[run.pk])
    body = client.get(url, {"find": "needle"}).json()
    assert body["find"] == "needle" and body["count"] == 60 and body["count_capped"] is False
    assert len(body["items"]) == 50 and all(i["name"].startswith("needle") for i in body["items"])
    assert [a["depth"] for a in body["ancestors"]] == [0, 1, 2, 3, 4]
    rest = client.get(url, {"find": "needle", "after": body["next"]}).json()
    assert len(rest["items"]) == 10 and rest["next"] is None
    plain = client.get(url).json()
    assert plain["find"] is None and plain["count"] is None and plain["ancestors"] is None


@pytest.mark.parametrize(
    "params",
    [{"find": "status:nope"}, {"find": "..."}, {"find": "needle", "parent": ""},
     {"find": "needle", "after": "garbage"}],
)  # fmt: skip
def test_the_api_refuses_a_bad_find(client, params):
    run = deep_run(depth=2, matches=1)
    response = client.get(reverse("api:run_steps", args=[run.pk]), params)
    assert response.status_code == 400
    assert response.json()["detail"]


# --- the plans: the index, never a scan of the run -----------------------------------------


def test_the_words_are_looked_up_in_the_full_text_index():
    from tests.test_query_plans import plans_of

    run = deep_run(depth=4, siblings=10, matches=5)
    find = found.parse("needle")
    plans = plans_of(lambda: found.count(run.pk, find), dear=("sort", "seqscan"))
    plans += plans_of(
        lambda: found.window(run.pk, find, counted=(5, False)), dear=("sort", "seqscan")
    )
    steps = [step for _, plan in plans for step in plan]
    if connection.vendor == "postgresql":
        # The steps' stored vector is tested on the rows an index gives (the GIN's, or
        # the run's): the planner's choice (tests/test_query_plans.py checks its reads).
        assert not any(step == "Seq Scan traces_step" for step in steps), steps
    else:
        # FTS5 with the run's id range (">" and "<" on its rowid), the rows by id.
        assert any("VIRTUAL TABLE INDEX 0:M" in step and "><" in step for step in steps)
        assert not any(re.match(r"SCAN traces_step( |$)", step) for step in steps), steps


@pytest.mark.parametrize("text", ["needle", "status:failed"])
def test_a_count_in_a_noted_range_reads_no_index_of_the_runs_steps(text):
    """Counted in a Run whose range of step ids is noted: the words from the full-text
    index within it alone (SQLite read min(id), max(id) and count(*) of the run's steps
    for the range, 20-35 ms for the big run at 1 M steps; PostgreSQL probed its first
    and last steps, then counted again through all of them under the cap); a failed
    status from the run's failed steps' own index (its failed subtrees' steps, 36,698,
    were each read for their status)."""
    from tests.test_query_plans import plans_of

    run = deep_run(depth=4, siblings=10, matches=5)
    assert found.scope(run).alone
    counted = lambda: found.count(run, found.parse(text))  # noqa: E731
    assert counted() == (5, False)
    dear = ("seqscan",) if connection.vendor == "postgresql" else ()
    if connection.vendor == "postgresql":
        # This run's statistics, not what an earlier test left in the table's: on a
        # few thousand rows of unknown make-up any index of the run's looks as cheap.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE traces_step")
    [(sql, plan)] = plans_of(counted, dear=dear)
    if connection.vendor == "postgresql":
        indexes = {step.split()[-1] for step in plan if " Scan " in step and "step" in step}
        indexes -= {"traces_step"}  # a bitmap's heap: the rows its index gave
    else:
        indexes = {re.search(r"INDEX (\w+)", step)[1] for step in plan if " INDEX " in step}
        indexes -= {"0"}  # FTS5's
    # The failed steps' partial indexes (on a table this small PostgreSQL may take the
    # store's, step_failed_at; the big store's plan reads the run's).
    failed = {"step_run_failed_started", "step_failed_at"}
    assert indexes <= ({"step_search_bucketed"} if text == "needle" else failed), f"{sql}\n{plan}"
    if connection.vendor == "sqlite" and text == "needle":
        assert not [step for step in plan if "traces_step " in step], plan


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's GIN buckets")
def test_a_window_of_few_matches_reads_the_noted_ranges_postings_alone():
    """A few matches' window on PostgreSQL, the run's range of ids noted: the words'
    postings in its id buckets, not in every run's (the whole posting list was read:
    3,686 steps for `429` at 1 M steps, 454 of them the big run's)."""
    from tests.test_query_plans import _analyzed, _steps_read

    run = deep_run(depth=3, siblings=0, matches=5)
    far = make_runs(1, name="far")[0]
    base = ((run.step_id_max >> 16) + 2) << 16
    Step.objects.bulk_create(
        Step(id=base + n, run=far, key=f"f{n}", seq=n, position=n, depth=0, name="needle far",
             type="exec", status="succeeded", child_count=0)
        for n in range(300)
    )  # fmt: skip
    with connection.cursor() as cursor:
        index_runs(cursor, [far.pk])
        cursor.execute("ANALYZE traces_step")
    find = found.parse("needle")
    counted = found.count(run, find)
    assert counted == (5, False) and found.few_matches(run, find)
    window = found.window(run, find, counted=counted)
    assert [step.name for step in window.items] == [f"needle_{n}" for n in range(5)]
    # The window's matches (its subquery alone: how the tiny table's rows are joined to
    # them is the planner's whim): the run's 5, not the far run's 300 too.
    sql, params = found._matching_ids_sql(found.scope(run), find)

    def matches():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return {pk for (pk,) in cursor.fetchall()}

    assert matches() == {step.pk for step in window.items}
    [(_, plan)] = _analyzed(matches)
    assert _steps_read(plan) <= 2 * 5, _steps_read(plan)


def test_a_timeline_windows_matches_are_its_rows_looked_up_by_id():
    """The matches among a timeline window's rows: its ids, each looked up by id and
    tested against the index within their range. SQLite, which without statistics
    takes an equality on the run for a few rows, walked the run's steps instead (the
    big run's 100,000 through (run, started_at): 16 ms at 1 M steps)."""
    from tests.test_query_plans import plans_of

    run = deep_run(depth=4, siblings=50, matches=5)
    rows = list(Step.objects.filter(run=run).order_by("seq").values_list("pk", "name")[100:])
    find = found.parse("needle")
    among = lambda: found.ids_among(run, find, [pk for pk, _ in rows])  # noqa: E731
    assert among() == {pk for pk, name in rows if name.startswith("needle")} and among()
    if connection.vendor == "postgresql":
        return  # each row's stored vector tested (PostgreSQL plans by its statistics)
    [(sql, plan)] = plans_of(among)
    reads = [step for step in plan if "traces_step " in step]
    assert reads and all("INTEGER PRIMARY KEY" in step for step in reads), f"{sql}\n{plan}"


def test_a_window_of_many_matches_walks_the_runs_order():
    from tests.test_query_plans import plans_of, sorts

    run = deep_run(depth=3, siblings=10, matches=5)
    find = found.parse("needle")
    plans = plans_of(lambda: found.window(run.pk, find, counted=(found.COUNT_CAP, True)))
    assert not [sorts(plan) for _, plan in plans if sorts(plan)]


@pytest.mark.parametrize("cap", [3, 100])
def test_a_count_reads_the_runs_id_range_and_counts_a_step_outside_it(monkeypatch, cap):
    """PostgreSQL counts a word first in the id buckets between the ids of the run's
    first and last steps (here across a bucket's edge, 65,536), another run's matches
    in those buckets left out; a step written later (its id past them all) is still
    counted when the range holds no more than the cap."""
    run, other = make_runs(2, name="ranged")
    rows: list[Step] = []

    def add(owner: Run, pk: int, seq: int, name: str) -> None:
        rows.append(Step(id=pk, run=owner, key=f"k{pk}", seq=seq, position=seq, depth=0,
                         name=name, type="exec", status="succeeded", child_count=0))  # fmt: skip

    for n in range(8):
        add(run, 65_532 + 2 * n, 2 * n, "needle here")
        add(other, 65_520 + n if n < 4 else 65_556 + n, n, "needle there")  # same buckets
    add(run, 300_000, 5, "needle late")
    Step.objects.bulk_create(rows)
    with connection.cursor() as cursor:
        index_runs(cursor, [run.pk, other.pk])
    monkeypatch.setattr(found, "COUNT_CAP", cap)
    assert found.count(run.pk, found.parse("needle")) == (min(9, cap), cap < 9)
    assert found.count(run.pk, found.parse("late")) == (1, False)


@pytest.mark.parametrize("noted", [True, False], ids=["noted ids", "ids read"])
@pytest.mark.parametrize("cap", [3, 100])
def test_a_capped_count_is_taken_among_the_runs_own_steps_when_ids_interleave(
    monkeypatch, cap, noted
):
    """Another run's steps written between this run's (two writers at once): the
    count's cap is reached by this run's matches alone, not used up by the other's;
    also when the run's range of ids is noted (it holds the other's steps too)."""
    run, other = make_runs(2, name="woven")
    rows = [
        Step(id=1_000 + 2 * n + (owner is other), run=owner, key=f"k{n}", seq=n, position=n,
             depth=0, name="needle", type="exec", status="succeeded", child_count=0)
        for n in range(9) for owner in (run, other)
    ]  # fmt: skip
    Step.objects.bulk_create(rows)
    with connection.cursor() as cursor:
        index_runs(cursor, [run.pk, other.pk])
    Run.objects.filter(pk=run.pk).update(step_count=9, step_id_min=1_000, step_id_max=1_016)
    scope = Run.objects.get(pk=run.pk) if noted else run.pk
    assert found.scope(scope).alone is False
    monkeypatch.setattr(found, "COUNT_CAP", cap)
    assert found.count(scope, found.parse("needle")) == (min(9, cap), cap < 9)
    monkeypatch.setattr(found, "FEW_MATCHES", 8)
    assert not found.few_matches(scope, found.parse("needle"))
    window = found.window(scope, found.parse("needle"), counted=(9, False))
    assert [step.key for step in window.items] == [f"k{n}" for n in range(9)]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's GIN buckets")
def test_a_count_in_a_run_given_by_id_reads_the_words_not_the_runs_steps():
    """PostgreSQL, the run's range of ids unknown (a run given by its id): a rare word's
    count from its few matches in the index, each tested for the run, not ANDed with
    the run's every step of step_run_seq (the planner guesses ~50,000 matches for
    buckets known only at run time: 4-7 ms for a run of 100,000 steps among 400,000;
    on a table this small it never does, so this guards the plan's shape). Only the
    probes of the run's first and last steps read that index."""
    from tests.test_query_plans import _all_nodes, _analyzed

    run = make_runs(1, name="by id")[0]
    steps = make_steps(run, 3_000)
    Step.objects.filter(pk__in=[step.pk for step in steps[1:10:2]]).update(name="rare_word")
    with connection.cursor() as cursor:
        index_runs(cursor, [run.pk])
        cursor.execute("ANALYZE traces_step")
    counted = lambda: found.count(run.pk, found.parse("rare_word"))  # noqa: E731
    assert counted() == (5, False)
    [(_, plan)] = _analyzed(counted)
    by_run = [node for node in _all_nodes(plan) if node.get("Index Name") == "step_run_seq"]
    reads = [node["Actual Rows"] * node.get("Actual Loops", 1) for node in by_run]
    assert reads and max(reads) == 1, reads  # probes of one step each


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's GIN buckets")
def test_a_run_given_by_id_is_looked_up_in_the_buckets_the_store_holds():
    """PostgreSQL, the run's range of ids unknown (a run given by its id): its words are
    looked up in the coarse buckets that hold a step (pg_present_buckets, a skip over
    the primary key), not in each bucket from the store's lowest id to its highest:
    ids that jump by 2**32 are three buckets here, not 65,537 (~1 s); ids from one
    sequence are each bucket from the lowest to the highest, looked up in none."""
    from traces.search.index import STEPS, pg_present_buckets

    run, other = make_runs(2, name="jump")
    rows = [
        Step(id=pk, run=owner, key=f"k{pk}", seq=seq, position=seq, depth=0, name=name,
             type="exec", status="succeeded", child_count=0)
        for owner, pk, seq, name in (
            (other, 5, 1, "needle there"), (other, 65_540, 2, "needle there"),
            (run, 2**32 + 7, 1, "needle here"), (run, 2**32 + 9, 2, "plain"),
            (run, 2**32 + 11, 3, "needle again"),
        )
    ]  # fmt: skip
    Step.objects.bulk_create(rows)
    with connection.cursor() as cursor:
        index_runs(cursor, [run.pk, other.pk])
        cursor.execute(f"{pg_present_buckets(STEPS)} SELECT bucket FROM present")
        assert [bucket for (bucket,) in cursor.fetchall()] == [0, 1, 2**16]
    needle = found.parse("needle")
    assert found.count(run.pk, needle) == (2, False)
    window = found.window(run.pk, needle, counted=(2, False))
    assert [step.key for step in window.items] == [f"k{2**32 + 7}", f"k{2**32 + 11}"]
    assert found.count(other.pk, needle) == (2, False)
