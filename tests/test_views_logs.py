"""Log lines across runs: /logs/?q= and GET /api/logs over the samples."""

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

import traces.search.logs as search_logs_module
from tests.factories import BASE_TIME, make_runs, make_steps, refresh_step_names
from traces.ingest.loader import ingest_paths
from traces.ingest.store import delete_runs
from traces.models import LogEntry, Run, Step
from traces.search.index import index_runs
from traces.search.logs import search_logs

pytestmark = pytest.mark.django_db
URL = reverse("traces:log-search")


@pytest.fixture
def loaded(samples):
    ingest_paths([samples])


def found(client, **query) -> list[int]:
    response = client.get(URL, query)
    assert response.status_code == 200
    return [line.pk for line in response.context["hits"].items]


def scan(*words, **filters) -> list[int]:
    lines = LogEntry.objects.filter(**filters)
    for word in words:
        lines = lines.filter(message__icontains=word)
    return list(lines.order_by("-pk").values_list("pk", flat=True))


def test_the_ingest_writes_each_line_s_step_name_on_it(loaded):
    """LogEntry.step_name, the key the search matches a step name by: its step's name
    as stored, '' for a line without a step (or of a step its run does not have)."""
    lines = LogEntry.objects.values_list("step_name", "step__name", "step_id")
    assert [(name, step) for name, step, _ in lines if name != (step or "")] == []
    assert {bool(name) for name, _, step_id in lines if step_id} == {True}
    assert {name for name, _, step_id in lines if step_id is None} == {""}


def test_every_word_must_be_in_the_line_newest_first(client, loaded):
    expected = scan("step", "completed")
    assert expected and found(client, q="step completed") == expected[:50]
    assert found(client, q="completed nosuchwordatall") == []


def test_the_filters_narrow_the_lines(client, loaded):
    workflow_type = Run.objects.filter(format="workflow").exclude(type="").first().type
    assert found(client, q="completed", level="info") == scan("completed", level="info")[:50]
    assert found(client, q="completed", type=workflow_type) == scan(
        "completed", run__type=workflow_type
    )
    named = LogEntry.objects.filter(step__isnull=False, message__icontains="completed").first()
    by_step = found(client, q="completed", step=named.step.name)
    assert by_step == scan("completed", step__name=named.step.name)[:50] and named.pk in by_step


def test_pages_go_older_with_a_cursor(client, loaded):
    every = scan("step")
    first = client.get(URL, {"q": "step"}).context["hits"]
    assert len(every) > 50 and first.older == every[49]
    second = found(client, q="step", before=first.older)
    assert second == every[50:100]


def test_a_page_names_each_line_s_run_and_step_with_links(client, loaded):
    html = client.get(URL, {"q": "parse-request"}).content.decode()
    line = LogEntry.objects.filter(message__icontains="parse-request").first()
    assert f'href="{line.run.get_absolute_url()}?tab=logs"' in html
    assert f'href="{line.step.get_absolute_url()}"' in html


def test_each_line_s_cells_are_named_for_its_phone_card_and_names_are_isolated(client, loaded):
    """On a phone a line is a card (app.css: time and level on top, run, step, then the
    message on a line of its own): its cells carry the classes the card places, its
    run and step cells their labels; names and the message are isolated (<bdi>), so
    an override in a run's name does not turn its format and type around."""
    response = client.get(URL, {"q": "parse-request"})
    html = response.content.decode()
    assert '<table class="log-table log-search-table">' in html
    rows = html.count("<tr data-row")
    assert rows == len(response.context["hits"].items) > 0
    for cell in ('class="nowrap log-time"', 'class="log-level"', 'class="log-cell"'):
        assert html.count(cell) == rows, cell
    assert html.count('class="name log-run" data-label="Run"') == rows
    assert html.count('class="name log-step" data-label="Step"') == rows
    assert html.count('<div class="log-message"><bdi>') == rows
    line = response.context["hits"].items[0]
    assert f'?tab=logs"><bdi>{line.run.name or line.run.external_id}</bdi></a>' in html


def test_deleted_runs_leave_the_log_index(client, loaded):
    runs = list(Run.objects.filter(format="workflow").values_list("pk", flat=True))
    delete_runs(runs)
    assert found(client, q="completed") == scan("completed")
    assert not LogEntry.objects.filter(run__format="workflow").exists()


def test_the_api_is_the_page_s_twin(client, loaded):
    body = client.get("/api/logs", {"q": "completed", "level": "info"}).json()
    assert [line["id"] for line in body["items"]] == scan("completed", level="info")[:50]
    assert body["count"] == len(scan("completed", level="info")) and body["capped"] is False
    first = body["items"][0]
    assert first["run"]["url"].startswith("/runs/") and "message" in first
    bad = client.get("/api/logs", {"q": "x", "before": "0"})
    assert bad.status_code == 400 and "before" in bad.json()["errors"]


def test_hostile_text_is_escaped_and_queries_never_fail(client, loaded):
    line = LogEntry.objects.first()
    LogEntry.objects.filter(pk=line.pk).update(message="<script>alert(1)</script> hostile")
    assert found(client, q="hostile") == [line.pk]
    html = client.get(URL, {"q": "hostile"}).content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    for query in ['"', "AND", "*", "(", "NEAR", "-x"]:
        assert client.get(URL, {"q": query}).status_code == 200
    assert client.get(URL, {"q": "x", "since": "yesterday"}).status_code == 400


def test_without_words_the_newest_lines_are_listed_and_the_query_count_is_flat(
    client, loaded, django_assert_max_num_queries, monkeypatch
):
    assert found(client) == scan()[:50]
    html = client.get(URL).content.decode()
    assert "Log lines, newest first, 50 a page." in html
    assert "Type words of a line to search them." in html
    # A query of no searchable word lists the newest lines too, and says why.
    assert found(client, q="—") == scan()[:50]
    # PostgreSQL: the newest id, then the walk over the id buckets and the newest
    # page's read (newest.py), in a savepoint with their planner settings.
    with django_assert_max_num_queries(2 if connection.vendor == "sqlite" else 8):
        client.get(URL, {"q": "completed"})
    # A step name: first whether its steps with lines are few (_named_steps_with_lines);
    # few, one read of them; else as above.
    named = LogEntry.objects.filter(step__isnull=False).first().step.name
    with django_assert_max_num_queries(3):
        client.get(URL, {"q": "completed", "step": named})
    monkeypatch.setattr(search_logs_module, "NAMED_LINES", 0)
    with django_assert_max_num_queries(3 if connection.vendor == "sqlite" else 9):
        client.get(URL, {"q": "completed", "step": named})
    with django_assert_max_num_queries(3):  # the lines, their rows, the sparse check
        client.get(URL, {"type": "nosuchtype", "since": "7d"})


def test_without_words_the_filters_narrow_the_newest_lines(client, loaded):
    workflow = Run.objects.filter(format="workflow").exclude(type="").first()
    assert found(client, level="error") == scan(level="error")[:50]
    assert found(client, format="workflow") == scan(run__format="workflow")[:50]
    assert (
        found(client, type=workflow.type, level="info")
        == scan(run__type=workflow.type, level="info")[:50]
    )
    named = LogEntry.objects.filter(step__isnull=False).first()
    assert found(client, step=named.step.name) == scan(step__name=named.step.name)[:50]
    assert (
        found(client, type="nosuchtype") == []
        and found(client, format="otlp") == scan(run__format="otlp")[:50]
    )
    html = client.get(URL, {"type": "nosuchtype"}).content.decode()
    assert "No log line matches these filters." in html


def test_without_words_a_time_range_reads_the_lines_in_it(client, loaded):
    timed = LogEntry.objects.exclude(time=None).order_by("time")
    times = list(timed.values_list("time", flat=True))
    middle = times[len(times) // 2]
    since = middle.strftime("%Y-%m-%d %H:%M:%S")
    expected = scan(time__gte=middle.replace(microsecond=0))
    assert expected and found(client, since=since) == expected[:50]
    assert found(client, since="1h") == scan(time__gte=timezone.now() - timedelta(hours=1))[:50]


@pytest.mark.parametrize("sparse", [0, 100_000])
def test_without_words_pages_go_older_through_the_same_lines_whichever_index(
    client, loaded, monkeypatch, sparse
):
    """A filter that keeps few lines reads them through its index (SPARSE), the
    others walk the newest first: both list the same lines, page after page."""
    monkeypatch.setattr(search_logs_module, "SPARSE", sparse)
    expected = scan(run__format="workflow", level="info")
    assert len(expected) > 50
    listed, before = [], None
    while True:
        query = {"format": "workflow", "level": "info", **({"before": before} if before else {})}
        hits = client.get(URL, query)
        hits = hits.context["hits"]
        listed += [line.pk for line in hits.items]
        before = hits.older
        if before is None:
            break
    assert listed == expected
    middle = LogEntry.objects.exclude(time=None).order_by("time")[20].time.replace(microsecond=0)
    assert (
        found(client, since=middle.strftime("%Y-%m-%d %H:%M:%S"), level="info")
        == scan(time__gte=middle, level="info")[:50]
    )


def test_the_api_lists_the_newest_lines_without_words(client, loaded):
    body = client.get("/api/logs", {"level": "info"}).json()
    assert [line["id"] for line in body["items"]] == scan(level="info")[:50]


# Log lines at these ids (PostgreSQL reads a word's lines a bucket of 65,536 ids at a
# time, newest first: search/newest.py): a bucket with more matches than the cap, a
# line in the oldest bucket, lines in the buckets above, newer lines without the word.
OLDEST_LINE = 7
DENSE_LINES = range(70_000, 71_400)
SPARSE_LINES = (140_000, 140_700, 200_000, 300_000, 300_001)
NEWER_LINES = (330_000, 330_001)


@pytest.fixture
def spread_lines() -> list[LogEntry]:
    """Lines holding `zebra` at those ids, of two runs (type alpha / format workflow,
    type beta / format runs) and two step names, fetch and send; levels info and
    event, error for the oldest and the sparse ones; a second apart. Newest first.
    Also a step named idle (alpha's) of one line without the word, the newest, and a
    step named unlogged (beta's) of none."""
    alpha = make_runs(1, format="workflow", type="alpha")[0]
    beta = make_runs(1, format="runs", type="beta")[0]
    steps = {run.pk: make_steps(run, 3) for run in (alpha, beta)}
    ids = [OLDEST_LINE, *DENSE_LINES, *SPARSE_LINES, *NEWER_LINES]
    lines = []
    for index, pk in enumerate(ids):
        run = (alpha, beta)[index % 2]
        dense = pk in DENSE_LINES
        lines.append(
            LogEntry(
                id=pk,
                run=run,
                step=steps[run.pk][index // 2 % 2],
                seq=index,
                time=BASE_TIME + timedelta(seconds=index),
                level=("info", "event")[index // 3 % 2] if dense else "error",
                message="nothing here" if pk in NEWER_LINES else "a zebra line",
            )
        )
    idle = LogEntry(id=NEWER_LINES[-1] + 1, run=alpha, step=steps[alpha.pk][2], seq=len(ids),
                    time=BASE_TIME, level="info", message="nothing here")  # fmt: skip
    LogEntry.objects.bulk_create([*lines, idle])
    for run in (alpha, beta):
        Run.objects.filter(pk=run.pk).update(log_count=LogEntry.objects.filter(run=run).count())
    with connection.cursor() as cursor:
        index_runs(cursor, [alpha.pk, beta.pk])  # SQLite's index (PostgreSQL's keeps itself)
    Step.objects.filter(run=alpha, position=2).update(name="idle")
    Step.objects.filter(run=beta, position=2).update(name="unlogged")
    for position, name in enumerate(("fetch", "send")):
        Step.objects.filter(run__in=(alpha, beta), position=position).update(name=name)
    refresh_step_names()
    return list(LogEntry.objects.select_related("run", "step").order_by("-pk"))


def _passes(line: LogEntry, filters: dict) -> bool:
    checks = {
        "level": lambda value: line.level == value,
        "type": lambda value: line.run.type == value,
        "format": lambda value: line.run.format == value,
        "step": lambda value: line.step.name == value,
        "since": lambda value: line.time >= value,
        "until": lambda value: line.time <= value,
        "before": lambda value: line.pk < value,
    }
    return all(checks[name](value) for name, value in filters.items() if value is not None)


@pytest.mark.parametrize("named", [0, 1000])
@pytest.mark.parametrize("sparse", [0, 100_000])
@pytest.mark.parametrize(("cap", "size"), [(1000, 200), (30, 20)])
def test_a_word_s_lines_over_id_buckets_pass_every_filter_from_every_cursor(
    spread_lines, monkeypatch, sparse, named, cap, size
):
    """Each page: the newest `size` lines holding the word that pass the filters, below
    the cursor; counted up to the cap (capped past it); the next cursor its last line
    when more follow. The same whichever way the lines are read: the id buckets
    (PostgreSQL, the filters tested in each; a time range's buckets alone), the lines
    of a filter that keeps few (SPARSE), a step name's few lines (NAMED_LINES: each
    step name's are at most 704 here), FTS5's rowid order (SQLite)."""
    monkeypatch.setattr(search_logs_module, "SPARSE", sparse)
    monkeypatch.setattr(search_logs_module, "NAMED_LINES", named)
    monkeypatch.setattr(search_logs_module, "COUNT_CAP", cap)
    middle = next(line.time for line in spread_lines if line.pk == 70_700)
    worded = [line for line in spread_lines if "zebra" in line.message]
    for filters in (
        {},
        {"level": "error"},
        {"level": "info"},
        {"type": "alpha"},
        {"format": "runs"},
        {"step": "fetch"},
        {"since": middle},
        {"until": middle},
        {"type": "beta", "level": "event", "step": "send", "since": middle},
        {"level": "nosuchlevel"},
        {"step": "fetch", "level": "error"},
        {"step": "send", "until": middle, "format": "runs"},
        {"step": "idle"},
        {"step": "unlogged"},
        {"step": "nosuchstep"},
    ):
        for before in (None, 300_001, 140_001, 70_701, 70_000, OLDEST_LINE + 1, OLDEST_LINE):
            wanted = [line.pk for line in worded if _passes(line, {**filters, "before": before})]
            hits = search_logs("zebra", {**filters, "before": before}, size=size)
            shown = wanted[:size]
            assert [line.pk for line in hits.items] == shown, (filters, before)
            assert (hits.count, hits.capped) == (min(len(wanted), cap), len(wanted) > cap)
            assert hits.older == (shown[-1] if len(wanted) > size else None), (filters, before)


def test_a_step_name_s_lines_are_read_apart_only_when_its_steps_and_lines_are_few(
    spread_lines, monkeypatch
):
    """_named_steps_with_lines at its bounds: fetch is 3 steps with lines, two of them
    neighbours in id (3 hops of the leapfrog), send 1, idle 1 step of 1 line and 50
    steps without lines after every step with lines (2 hops: the 50 skipped in one),
    unlogged 1 step of none (1 hop), nosuchstep none (no hop); one hop or line more
    than the caps and the name's lines are walked as any filter's. Either way, the same
    answer."""
    Step.objects.filter(run__type="alpha", position=1).update(name="fetch")
    spread_lines = list(LogEntry.objects.select_related("run", "step").order_by("-pk"))
    later = make_steps(Run.objects.get(type="beta"), 50, start=3)
    Step.objects.filter(pk__in=[step.pk for step in later]).update(name="idle")
    refresh_step_names()
    named = {"fetch": 3, "send": 1, "idle": 2, "unlogged": 1, "nosuchstep": 0}
    for name, hops in named.items():
        lines = LogEntry.objects.filter(step__name=name).count()
        with_lines = [pk for pk in Step.objects.filter(name=name).values_list("pk", flat=True)
                      if LogEntry.objects.filter(step=pk).exists()]  # fmt: skip
        for cap_hops, cap_lines, few in (
            (hops, lines, True),
            (max(hops - 1, 0), lines, hops == 0),
            (hops, max(lines - 1, 0), lines == 0),
        ):
            monkeypatch.setattr(search_logs_module, "NAMED_STEPS", cap_hops)
            monkeypatch.setattr(search_logs_module, "NAMED_LINES", cap_lines)
            with connection.cursor() as cursor:
                found = search_logs_module._named_steps_with_lines(cursor, name)
            assert found == (sorted(with_lines) if few else None), (name, cap_hops, cap_lines)
            wanted = [
                line.pk
                for line in spread_lines
                if "zebra" in line.message and line.step.name == name and line.pk < 300_001
            ]
            hits = search_logs("zebra", {"step": name, "before": 300_001}, size=20)
            assert [line.pk for line in hits.items] == wanted[:20], (name, cap_hops, cap_lines)
            assert hits.count == min(len(wanted), 1000), (name, cap_hops, cap_lines)


@pytest.mark.parametrize("sparse", [0, 100_000])
def test_a_time_range_finds_its_lines_wherever_their_ids_lie(spread_lines, monkeypatch, sparse):
    """Lines written out of time order (an old file ingested late, a line dated ahead
    of its run, a line without a time): a time range's ids are bounded by each id
    bucket's first and last times, never by where most of its lines lie; the lines
    found are those a scan of every line finds, from every cursor."""
    monkeypatch.setattr(search_logs_module, "SPARSE", sparse)
    moved = {
        300_000: BASE_TIME - timedelta(days=1),  # the newest bucket's, dated before all
        70_001: BASE_TIME + timedelta(days=1),  # a dense bucket's, dated after all
        OLDEST_LINE: BASE_TIME + timedelta(seconds=700),  # the oldest, amid the dense ones
        140_700: None,
    }
    for pk, time in moved.items():
        LogEntry.objects.filter(pk=pk).update(time=time)
    lines = list(LogEntry.objects.select_related("run", "step").order_by("-pk"))
    worded = [line for line in lines if "zebra" in line.message and line.time is not None]
    day = timedelta(days=1)
    for filters in (
        {"until": BASE_TIME - timedelta(hours=1)},
        {"since": BASE_TIME + timedelta(hours=1)},
        {"since": BASE_TIME + timedelta(seconds=600), "until": BASE_TIME + timedelta(seconds=800)},
        {"since": BASE_TIME - day, "until": BASE_TIME - day},
        {"since": BASE_TIME + day * 2},
        {"until": BASE_TIME - day * 2},
        {"since": BASE_TIME + timedelta(seconds=1_000), "level": "error"},
    ):
        for before in (None, 300_001, 140_001, 70_701, 70_002, OLDEST_LINE + 1):
            wanted = [line.pk for line in worded if _passes(line, {**filters, "before": before})]
            hits = search_logs("zebra", {**filters, "before": before}, size=20)
            assert [line.pk for line in hits.items] == wanted[:20], (filters, before)
            assert hits.count == min(len(wanted), 1000), (filters, before)


LEVELS = ("error", "Error", "ERROR", "-", "", "warn-ing", "info")


@pytest.fixture
def levelled_lines() -> list[LogEntry]:
    """Two lines a level of LEVELS, of one run: `a zebra line` and `zebra error here`;
    levels written as they come (case, punctuation, none). Newest first."""
    run = make_runs(1)[0]
    messages = ("a zebra line", "zebra error here")
    pairs = [(level, message) for level in LEVELS for message in messages]
    LogEntry.objects.bulk_create(
        LogEntry(run=run, seq=seq, level=level, message=message)
        for seq, (level, message) in enumerate(pairs)
    )
    with connection.cursor() as cursor:
        index_runs(cursor, [run.pk])  # SQLite's index (PostgreSQL's keeps itself)
    return list(LogEntry.objects.order_by("-pk"))


def test_a_line_s_level_is_filtered_exactly_and_never_matched_by_a_word(levelled_lines):
    """SQLite matches the level inside FTS5 (its own column, migration 0041): a word
    is matched in the message alone (`error` never finds a line by its level, nor
    `warn`, `ing` or a level's token spelled as a word), a level filter keeps the lines
    of exactly that level (not those FTS5's tokens fold it with: `Error`, `ERROR`), a
    level without a letter or digit (`-`, no token) keeps its own, and a level changed
    after ingest is found at its new level."""
    for words, filters in (
        ("error", {}),
        ("zebra", {}),
        ("warn", {}),
        ("warn ing", {}),
        ("ing", {}),
        ("lvl_error", {}),
        ("level error", {}),
        *(("zebra", {"level": level}) for level in LEVELS if level),
        *(("error", {"level": level}) for level in LEVELS if level),
        ("zebra", {"level": "warn"}),
        ("zebra", {"level": "err"}),
    ):
        wanted = [
            line.pk
            for line in levelled_lines
            if all(word in line.message.split() for word in words.split())
            and _passes(line, filters)
        ]
        hits = search_logs(words, filters)
        assert [line.pk for line in hits.items] == wanted, (words, filters)
    assert len(search_logs("error", {"level": "Error"}).items) == 1
    moved = levelled_lines[0]
    LogEntry.objects.filter(pk=moved.pk).update(level="fatal")
    assert [line.pk for line in search_logs("zebra", {"level": "fatal"}).items] == [moved.pk]
    assert moved.pk not in [line.pk for line in search_logs("zebra", {"level": "info"}).items]
