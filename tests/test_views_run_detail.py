"""The run page (/runs/<id>/) and its fragments: header, tree, timeline, logs,
input/output, attributes and the step panel."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from tests.factories import make_runs
from tests.workflow_pair import PAIR_ID, write_pair
from traces.causes import error_cause
from traces.ingest import minimaps
from traces.ingest.loader import ingest_paths
from traces.models import Call, EntityLink, LogEntry, Run, Step
from traces.templatetags.traces_extras import ESTIMATED_TITLE

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HX = {"HX-Request": "true"}


# --- data ---------------------------------------------------------------------------------


def make_run(**fields) -> Run:
    values = {
        "format": "runs",
        "external_id": f"run-{Run.objects.count()}",
        "name": "nightly import",
        "status": "succeeded",
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=100),
        "duration_ms": 100_000.0,
    }
    values.update(fields)
    return Run.objects.create(**values)


def add_steps(run: Run, count: int, *, parent: Step | None = None, **fields) -> list[Step]:
    """`count` sibling steps made with one bulk insert; keeps the parent's and the
    run's summaries as ingest would."""
    start_seq = Step.objects.filter(run=run).count()
    prefix = f"{parent.key}/" if parent else ""
    steps = [
        Step(
            run=run,
            parent=parent,
            key=f"{prefix}{index}",
            seq=start_seq + index + 1,
            position=index,
            depth=parent.depth + 1 if parent else 0,
            name=fields.get("name", f"step {index}"),
            type=fields.get("type", "exec"),
            status=fields.get("status", "succeeded"),
            started_at=None if fields.get("untimed") else T0 + timedelta(milliseconds=40 * index),
            duration_ms=fields.get("duration_ms", 30.0),
            loop_index=(index // 3) if fields.get("loop") else None,
            failed_subtree=fields.get("status") == "failed",
            # as the store writes a failed step without a message
            error_cause=error_cause("") if fields.get("status") == "failed" else "",
        )
        for index in range(count)
    ]
    Step.objects.bulk_create(steps)
    if parent is not None:
        Step.objects.filter(pk=parent.pk).update(child_count=count)
        parent.child_count = count
    Run.objects.filter(pk=run.pk).update(step_count=start_seq + count)
    return list(Step.objects.filter(run=run, parent=parent).order_by("position"))


def add_logs(run: Run, count: int, *, step: Step | None = None, every_duplicate: int = 0):
    LogEntry.objects.bulk_create(
        LogEntry(
            run=run,
            step=step,
            seq=index + 1,
            time=T0 + timedelta(milliseconds=index),
            level="error" if index % 10 == 0 else "info",
            message=f"line {index}",
            duplicate=bool(every_duplicate) and index % every_duplicate == 1,
        )
        for index in range(count)
    )
    Run.objects.filter(pk=run.pk).update(log_count=count)


def page(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def fragment(client, url, **params):
    response = client.get(url, params, headers=HX)
    assert response.status_code == 200, response.content[:500]
    html = response.content.decode()
    assert "<html" not in html
    return html


def run_url(run, name="traces:run-detail"):
    return reverse(name, args=[run.pk])


def step_url(step, name="traces:step-detail"):
    return reverse(name, args=[step.run_id, step.key])


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def runs_sample(samples):
    ingest_paths([samples / "runs"])
    return Run.objects.get(name="sync_stripe", status="failed")


# --- the page and its tabs ----------------------------------------------------------------


def test_run_page_shows_header_counters_and_roots(client, runs_sample):
    html = page(client, run_url(runs_sample))
    assert "<html" in html and 'id="run-header"' in html and 'id="step-panel"' in html
    text = text_of(html)
    for counter in ("fetched", "inserted", "updated", "failed"):
        assert counter in text
    assert "141" in text and "117" in text
    assert "fetch_charges" in text and "process_charges" in text and "reconcile_balances" in text
    # Roots only: the batches inside process_charges load when it is opened (its row
    # summarises them).
    assert "<bdi>upsert_batch</bdi></a>" not in html
    assert "4 × upsert_batch" in text  # noqa: RUF001
    assert escape(runs_sample.error) in html
    assert 'href="/files/' in html
    assert f'href="/api/runs/{runs_sample.pk}"' in html and "copy link" in html


def test_a_run_no_longer_in_its_source_says_since_when_and_links_the_file(client, runs_sample):
    assert "No longer in its source" not in page(client, run_url(runs_sample))
    Run.objects.filter(pk=runs_sample.pk).update(left_source_at=T0)
    html = page(client, run_url(runs_sample))
    text = text_of(html)
    assert "No longer in its source since 2026-11-01 12:00:00" in text
    assert "kept here as history" in text and "prune --older-than" in text
    banner = html[html.index("No longer in its source") :]
    banner = banner[: banner.index("</p>")]
    assert f'href="{runs_sample.source_file.get_absolute_url()}"' in banner
    header = client.get(run_url(runs_sample), headers={**HX, "HX-Target": "run-header"})
    assert "No longer in its source" in header.content.decode()
    data = client.get(run_url(runs_sample), {"format": "json"}, follow=True).json()
    assert datetime.fromisoformat(data["left_source_at"]) == T0


def test_process_charges_shows_its_progress_and_its_batches_on_expand(client, runs_sample):
    html = page(client, run_url(runs_sample))
    assert "150/250" in html  # items processed / total on the row
    parent = Step.objects.get(run=runs_sample, name="process_charges")
    children = fragment(client, step_url(parent, "traces:step-children"))
    assert children.count('class="tree-item') == 4
    assert text_of(children).count("upsert_batch") == 4
    assert f'hx-get="{step_url(parent, "traces:step-children")}"' in html


@pytest.mark.parametrize("tab", ["tree", "timeline", "logs", "io", "attributes"])
def test_each_tab_is_a_full_page_and_an_htmx_fragment(client, runs_sample, tab):
    url = run_url(runs_sample)
    full = page(client, url, tab=tab)
    assert "<html" in full and 'aria-current="page"' in full
    part = fragment(client, url, tab=tab)
    assert part.lstrip().startswith('<div id="run-tabs"')
    assert 'id="run-header"' not in part


@pytest.mark.parametrize(
    ("name", "target"),
    [("traces:run-detail", "run-tabs"), ("traces:run-logs", "log-rows"), ("traces:run-tree", "")],
)
def test_history_restore_gets_the_whole_page(client, runs_sample, name, target):
    headers = {**HX, "HX-History-Restore-Request": "true", "HX-Target": target}
    html = client.get(run_url(runs_sample, name), headers=headers).content.decode()
    assert "<html" in html and 'id="run-header"' in html
    step = Step.objects.filter(run=runs_sample).first()
    panel = client.get(step_url(step), headers={**headers, "HX-Target": "step-panel"})
    assert "<html" in panel.content.decode()


def test_tab_links_push_their_own_url(client, runs_sample):
    html = page(client, run_url(runs_sample))
    for tab in ("tree", "timeline", "logs", "io", "attributes"):
        assert f'href="{run_url(runs_sample)}?tab={tab}"' in html
    assert html.count('hx-push-url="true"') >= 5


def test_input_output_and_attributes_tabs_pretty_print(client):
    run = make_run(input={"account": "acc_1", "limit": 5}, output=None, attributes={"v": [1, 2]})
    io = page(client, run_url(run), tab="io")
    assert "&quot;account&quot;: &quot;acc_1&quot;" in io
    assert "none recorded" in io  # no output
    attributes = page(client, run_url(run), tab="attributes")
    assert "&quot;v&quot;: [" in attributes and "<details" in attributes


def test_an_old_json_link_is_sent_on_to_the_api(client, runs_sample):
    response = client.get(run_url(runs_sample), {"format": "json"})
    assert response.status_code == 302
    assert response["Location"] == f"/api/runs/{runs_sample.pk}"
    response = client.get(response["Location"])
    assert response["Content-Type"].startswith("application/json")
    data = response.json()
    assert data["name"] == "sync_stripe" and data["status"] == "failed"
    assert data["output_counters"]["fetched"] == 141


def test_unknown_run_or_step_is_a_404(client, runs_sample):
    assert client.get(reverse("traces:run-detail", args=[999_999])).status_code == 404
    assert client.get(reverse("traces:run-tree", args=[999_999])).status_code == 404
    missing = reverse("traces:step-detail", args=[runs_sample.pk, "no-such-step"])
    assert client.get(missing).status_code == 404
    children = reverse("traces:step-children", args=[runs_sample.pk, "no-such-step"])
    assert client.get(children, headers=HX).status_code == 404
    # A step of another run is not found under this one.
    other = make_run()
    step = add_steps(other, 1)[0]
    assert client.get(step_url(step)).status_code == 200
    elsewhere = reverse("traces:step-detail", args=[runs_sample.pk, step.key])
    assert client.get(elsewhere).status_code == 404


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("traces:run-detail", {"tab": "nope"}),
        ("traces:run-detail", {"failed": "2"}),
        ("traces:run-detail", {"format": "xml"}),
        ("traces:run-detail", {"full": "everything"}),
        ("traces:run-tree", {"after": "!!"}),
        ("traces:run-tree", {"loop": "one"}),
        ("traces:run-timeline", {"before": "not-a-cursor"}),
        ("traces:run-logs", {"level": "<script>"}),
        ("traces:run-logs", {"duplicates": "yes"}),
        ("traces:run-logs", {"after": "%%%"}),
    ],
)
def test_bad_parameters_are_a_400_with_a_message(client, name, query):
    run = make_run()
    add_steps(run, 3)
    response = client.get(reverse(name, args=[run.pk]), query)
    assert response.status_code == 400
    assert "could not be answered" in response.content.decode()


def test_bad_parameters_on_step_urls_are_a_400(client):
    run = make_run()
    step = add_steps(run, 1)[0]
    assert client.get(step_url(step), {"full": "nope"}).status_code == 400
    children = step_url(step, "traces:step-children")
    assert client.get(children, {"after": "zz"}, headers=HX).status_code == 400


# --- tree ---------------------------------------------------------------------------------


def test_roots_are_windowed_with_a_show_more_fragment(client):
    run = make_run()
    add_steps(run, 450)
    html = page(client, run_url(run))
    assert html.count('class="tree-item') == 200
    more = re.search(r'<li class="tree-more"><a href="([^"]+)"', html).group(1)
    assert more.startswith(run_url(run, "traces:run-tree"))
    second = fragment(client, more.replace("&amp;", "&"))
    assert second.count('class="tree-item') == 200
    assert ">step 200<" in second and ">step 399<" in second and ">step 199<" not in second
    # Without JavaScript, the same link is a page of its own.
    assert ">step 200<" in page(client, more.replace("&amp;", "&"))
    more = re.search(r'<li class="tree-more"><a href="([^"]+)"', second).group(1)
    third = fragment(client, more.replace("&amp;", "&"))
    assert third.count('class="tree-item') == 50 and "tree-more" not in third


def test_children_are_windowed_by_200_too(client):
    run = make_run()
    parent = add_steps(run, 1, type="loop")[0]
    add_steps(run, 250, parent=parent)
    first = fragment(client, step_url(parent, "traces:step-children"))
    assert first.count('class="tree-item') == 200 and "tree-more" in first
    more = re.search(r'<li class="tree-more"><a href="([^"]+)"', first).group(1)
    assert more.startswith(step_url(parent, "traces:step-children"))
    rest = fragment(client, more.replace("&amp;", "&"))
    assert rest.count('class="tree-item') == 50


def test_expanding_works_without_javascript(client):
    run = make_run()
    parent = add_steps(run, 2)[1]
    child = add_steps(run, 2, parent=parent)[0]
    add_steps(run, 3, parent=child)
    html = page(client, run_url(run))
    link = re.search(r'class="tree-load" href="([^"#]+)', html).group(1).replace("&amp;", "&")
    assert link == step_url(parent, "traces:step-children")
    opened = page(client, link)
    assert "<html" in opened and '<details class="tree-node" open>' in opened
    assert f"{parent.key}/0" in opened  # its children are there
    # Open a grandchild's parent too: the link keeps what is already open.
    link = re.search(r'class="tree-load" href="([^"#]+)', opened).group(1).replace("&amp;", "&")
    deeper = page(client, link)
    assert deeper.count('<details class="tree-node" open>') == 2
    assert ">step 2<" in deeper  # the third grandchild


def test_expand_parameter_opens_steps_on_the_run_page(client):
    run = make_run()
    parent = add_steps(run, 1)[0]
    add_steps(run, 2, parent=parent)
    html = page(client, run_url(run), expand=parent.key)
    assert '<details class="tree-node" open>' in html
    assert html.count('class="tree-item') == 3


def test_loop_iterations_are_grouped(client, samples):
    ingest_paths([samples / "duckflux" / "json"])
    run = Run.objects.filter(name="Batch pager with loop").first()
    loop = Step.objects.get(run=run, name="page", parent=None)
    html = fragment(client, step_url(loop, "traces:step-children"))
    headings = re.findall(r'<li class="tree-group"[^>]*><span>iteration (\d+)</span>', html)
    assert headings == ["0", "1", "2", "3", "4"]
    # A step inside one iteration (the `if` of the last page) is not grouped again.
    inner = Step.objects.get(run=run, name="if", loop_index=4)
    assert "tree-group" not in fragment(client, step_url(inner, "traces:step-children"))


def test_iteration_headings_continue_across_windows(client):
    run = make_run()
    parent = add_steps(run, 1, type="loop")[0]
    add_steps(run, 300, parent=parent, loop=True)  # 3 steps per iteration
    first = fragment(client, step_url(parent, "traces:step-children"))
    assert first.count('class="tree-group"') == 67  # iterations 0..66 (row 199 is in 66)
    more = re.search(r'<li class="tree-more"><a href="([^"]+)"', first).group(1)
    assert "loop=66" in more
    rest = fragment(client, more.replace("&amp;", "&"))
    assert "iteration 66<" not in rest and "iteration 67<" in rest


def test_parallel_branches_render_side_by_side(client, samples):
    ingest_paths([samples / "duckflux" / "json"])
    run = Run.objects.filter(name="Parallel fan-out").first()
    parallel = Step.objects.get(run=run, type="parallel")
    html = fragment(client, step_url(parallel, "traces:step-children"))
    assert '<ul class="tree parallel-branches"' in html
    assert all(name in html for name in ("branch_a", "branch_b", "branch_c"))


def test_failed_only_keeps_the_ancestors_of_failed_steps(client):
    run = make_run(status="failed")
    _, container = add_steps(run, 2)
    Step.objects.filter(pk=container.pk).update(failed_subtree=True, name="container")
    add_steps(run, 1, parent=container, name="broken", status="failed")
    html = page(client, run_url(run), failed="1")
    assert ">container<" in html and ">step 0<" not in html
    assert 'aria-current="true">✗ failed only' in html
    container.refresh_from_db()
    children = fragment(client, step_url(container, "traces:step-children"), failed="1")
    assert ">broken<" in children
    # The lazy toggle keeps the filter.
    assert f"{step_url(container, 'traces:step-children')}?failed=1" in html


def test_failed_only_on_the_runs_sample(client, runs_sample):
    html = page(client, run_url(runs_sample), failed="1")
    assert "process_charges" in html
    assert "fetch_charges" not in html and "reconcile_balances" not in html


def test_tree_row_flags(client):
    run = make_run()
    step = add_steps(run, 1)[0]
    Step.objects.filter(pk=step.pk).update(
        call_count=3, link_count=1, never_closed=True, truncated=True, retries=2, attempt=3,
        items_total=10, items_processed=4, items_succeeded=3, items_failed=1,
    )  # fmt: skip
    text = text_of(page(client, run_url(run)))
    for expected in ("3 calls", "1 link", "never closed", "truncated", "2 retries", "attempt 3"):
        assert expected in text
    assert "4/10" in text


def test_failed_rows_show_the_head_of_their_error(client):
    run = make_run(status="failed")
    step = add_steps(run, 1, status="failed")[0]
    Step.objects.filter(pk=step.pk).update(error="timeout talking to db " + "E" * 50_000)
    html = page(client, run_url(run))
    assert "timeout talking to db EEE" in html
    assert "E" * 200 not in html  # the row never carries the whole error


def test_step_keys_with_slashes_work(client):
    run = make_run()
    parent = add_steps(run, 1)[0]
    child = add_steps(run, 1, parent=parent)[0]
    assert "/" in child.key
    assert child.key in page(client, step_url(child))
    assert "panel" in fragment(client, step_url(child))


def test_truncated_run_says_so(client):
    run = make_run(format="greentic", truncated=True)
    add_steps(run, 2)
    assert "Truncated" in page(client, run_url(run))


# --- timeline -----------------------------------------------------------------------------


def test_timeline_places_bars_on_the_runs_time_axis(client):
    run = make_run(finished_at=T0 + timedelta(seconds=1), duration_ms=1000.0)
    add_steps(run, 3)
    html = page(client, run_url(run), tab="timeline")
    bars = re.findall(r'<rect class="succeeded" x="([\d.]+)" y="0" width="([\d.]+)"', html)
    # Step n starts at 40n ms and lasts 30 ms, in a 1 s run.
    assert [(float(x), float(w)) for x, w in bars] == [(0.0, 3.0), (4.0, 3.0), (8.0, 3.0)]
    assert 'data-tip="step 1 · succeeded · starts +40ms · 30ms"' in html
    assert "no timestamps" not in html


def test_greentic_timeline_shows_order_and_durations(client, samples):
    ingest_paths([samples / "greentic"])
    run = Run.objects.filter(name="weather_bot.main").first()
    html = page(client, run_url(run), tab="timeline")
    assert "no time axis to zoom: this run's format records no timestamps" in html.lower().replace(
        "&#x27;", "'"
    )
    assert "data-minimap" not in html and "data-zoom" not in html
    assert html.count("<rect ") == Step.objects.filter(run=run).count()


def test_estimated_times_are_marked_in_the_header_and_on_the_timeline(
    client, samples, django_assert_num_queries
):
    ingest_paths([samples / "greentic"])
    run = Run.objects.filter(name="weather_bot.main").first()
    mark = f'<span class="estimated" title="{escape(ESTIMATED_TITLE)}">≈</span>'
    # The run, one window of roots, their groups, whether a previous run of its type exists.
    with django_assert_num_queries(4):
        html = page(client, run_url(run))
    header = html[html.index('id="run-header"') : html.index("</section>")]
    assert header.count(mark) == 3  # started, finished, duration
    timeline = fragment(client, run_url(run, "traces:run-timeline"))
    axis = re.search(r'<div class="timeline-axis".*?</div>', timeline).group()
    assert axis.count(mark) == 4  # every tick but 0
    recorded = make_run()
    add_steps(recorded, 2)
    assert "≈" not in page(client, run_url(recorded))
    assert "≈" not in fragment(client, run_url(recorded, "traces:run-timeline"))


def test_timeline_is_windowed_in_start_order(client):
    run = make_run()
    add_steps(run, 700)
    html = page(client, run_url(run, "traces:run-timeline"))
    assert html.count('class="timeline-row') == 300
    next_url = re.search(r'<a href="([^"]+)"[^>]*>next steps', html).group(1).replace("&amp;", "&")
    second = fragment(client, next_url)
    assert second.count('class="timeline-row') == 300
    assert 'data-key="300"' in second and "previous steps" in second
    prev_url = re.search(r'<a href="([^"]+)"[^>]*>\S previous', second).group(1)
    first_again = fragment(client, prev_url.replace("&amp;", "&"))
    assert 'data-key="0"' in first_again and 'data-key="299"' in first_again


def test_timeline_rows_open_the_step_panel(client, runs_sample):
    html = page(client, run_url(runs_sample), tab="timeline")
    step = Step.objects.filter(run=runs_sample).order_by("seq").first()
    assert f'hx-get="{step_url(step)}?tab=timeline" hx-target="#step-panel"' in html


# --- logs ---------------------------------------------------------------------------------


def test_workflow_logs_hide_repeated_rows_until_asked(client, samples):
    ingest_paths([samples / "workflow"])
    run = Run.objects.filter(format="workflow", logs__duplicate=True).distinct().first()
    total = LogEntry.objects.filter(run=run).count()
    unique = LogEntry.objects.filter(run=run, duplicate=False).count()
    assert 0 < unique < total
    url = run_url(run, "traces:run-logs")
    default = page(client, url)
    assert default.count("<tr data-row") == unique
    assert "show repeated rows" in default
    shown = fragment(client, url, duplicates="1")
    assert shown.lstrip().startswith('<div id="log-rows"')
    assert shown.count("<tr data-row") == total
    assert shown.count('class="badge flag">repeated') == total - unique


def test_logs_filter_by_level_and_step(client):
    run = make_run()
    steps = add_steps(run, 2)
    add_logs(run, 30)
    LogEntry.objects.filter(run=run, seq__lte=5).update(step=steps[1])
    url = run_url(run, "traces:run-logs")
    errors = fragment(client, url, level="error")
    assert errors.count("<tr data-row") == 3  # lines 0, 10, 20
    of_step = fragment(client, url, step=steps[1].key)
    assert of_step.count("<tr data-row") == 5
    full = page(client, url)
    assert '<option value="error">' in full and '<option value="info">' in full


def test_logs_pick_a_step_by_name_search_messages_and_show_milliseconds(client):
    run = make_run()
    steps = add_steps(run, 3)
    Step.objects.filter(pk__in=[steps[0].pk, steps[2].pk]).update(name="upsert_batch")
    add_logs(run, 30)
    LogEntry.objects.filter(run=run, seq__lte=4).update(step=steps[0])
    LogEntry.objects.filter(run=run, seq__in=[10, 11]).update(step=steps[2])
    url = run_url(run, "traces:run-logs")
    by_name = fragment(client, url, step="upsert_batch")
    assert by_name.count("<tr data-row") == 6  # both steps of that name
    assert "Lines of step <bdi>upsert_batch</bdi>." in by_name
    words = fragment(client, url, q="LINE 2")
    assert words.count("<tr data-row") == 11  # line 2, lines 20-29
    both = fragment(client, url, step="upsert_batch", q="line 1")
    assert both.count("<tr data-row") == 2  # lines 1 and 10 (seq 2 and 11)
    # Lines 1 ms apart, shown to the millisecond.
    html = page(client, url)
    assert "12:00:00.000<div" in html and "12:00:00.001<div" in html


def test_a_step_the_run_lacks_is_said_beside_the_logs_not_an_error(client):
    run = make_run()
    add_steps(run, 2)
    add_logs(run, 3)
    response = client.get(run_url(run, "traces:run-logs"), {"step": "<b>nope</b>"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "This run has no step named or keyed “<bdi>&lt;b&gt;nope&lt;/b&gt;</bdi>”." in html
    assert "No log lines match these filters." in html
    api = client.get(f"/api/runs/{run.pk}/logs", {"step": "nope"})
    assert api.status_code == 400 and "step" in api.json()["errors"]


def test_logs_are_keyset_paginated_by_seq(client):
    run = make_run()
    add_logs(run, 450)
    url = run_url(run, "traces:run-logs")
    first = page(client, url)
    assert first.count("<tr data-row") == 200
    next_url = re.search(r'<a href="([^"]+)"[^>]*>later lines', first).group(1)
    second = fragment(client, next_url.replace("&amp;", "&"))
    assert second.count("<tr data-row") == 200 and ">line 200<" in second


def test_log_rows_link_to_their_step(client):
    run = make_run()
    step = add_steps(run, 1)[0]
    add_logs(run, 2, step=step)
    html = page(client, run_url(run), tab="logs")
    assert f'href="{step_url(step)}"' in html


def test_log_rows_show_their_fields_and_attributes(client, django_assert_num_queries):
    run = make_run()
    add_logs(run, 3)
    LogEntry.objects.filter(run=run, seq=1).update(
        fields={"step_name": "load"}, attributes={"event_data": {"html": "<b>x</b>"}}
    )
    LogEntry.objects.filter(run=run, seq=2).update(attributes={"event_data": {"blob": "x" * 5000}})
    url = run_url(run, "traces:run-logs")
    with django_assert_num_queries(3):  # the run, one window of lines, its repeats
        html = fragment(client, url)
    assert html.count('<details class="log-fields">') == 2
    assert "<summary>fields · attributes</summary>" in html
    assert "&quot;html&quot;: &quot;&lt;b&gt;x&lt;/b&gt;&quot;" in html and "<b>x</b>" not in html
    # Long data is cut, never silently: ?full=logs shows it whole.
    assert "Showing the first 2,000 of 5,0" in html and "x" * 2100 not in html
    assert "x" * 5000 in fragment(client, url, full="logs")


def test_workflow_log_rows_show_the_event_data(client, samples):
    ingest_paths([samples / "workflow"])
    run = Run.objects.get(actor="bob@acme.io")
    text = text_of(page(client, run_url(run, "traces:run-logs")))
    assert "event_data" in text and "event_time" in text
    assert "the whole value is the step" in text and "tok_" not in text


# --- step panel ---------------------------------------------------------------------------


def test_step_panel_fragment_and_full_page(client, runs_sample):
    step = Step.objects.get(run=runs_sample, name="fetch_charges")
    part = fragment(client, step_url(step))
    assert part.lstrip().startswith('<aside id="step-panel"')
    assert "data-panel-close" in part
    text = text_of(part)
    assert "stripe_api" in text and "GET /v1/charges" in text and "429 Too Many Requests" in text
    full = page(client, step_url(step))
    assert "<html" in full and 'id="run-tabs"' in full and 'id="step-panel"' in full


def test_step_panel_shows_progress_subject_links_and_attributes(client, runs_sample):
    step = Step.objects.get(run=runs_sample, name="process_charges")
    text = text_of(fragment(client, step_url(step)))
    assert "150 of 250 processed" in text
    assert "account acc_main" in text
    html = fragment(client, step_url(step))
    assert reverse("traces:entity-detail", args=["account", "acc_main"]) in html
    batch = (
        Step.objects.filter(run=runs_sample, name="upsert_batch", link_count__gt=0)
        .order_by("seq")
        .first()
    )
    batch_html = fragment(client, step_url(batch))
    link = EntityLink.objects.filter(step=batch).first()
    assert reverse("traces:entity-detail", args=[link.entity_type, link.entity_id]) in batch_html


def test_step_panel_of_a_nested_step_opens_its_ancestors_in_the_tree(client, runs_sample):
    batch = Step.objects.filter(run=runs_sample, name="upsert_batch").first()
    html = page(client, step_url(batch))
    assert '<details class="tree-node" open>' in html
    assert "process_charges" in text_of(html.split('id="step-panel"')[1])  # the crumbs


def test_running_step_shows_a_rate(client):
    run = make_run(status="running", finished_at=None, duration_ms=None)
    step = add_steps(run, 1, status="running")[0]
    Step.objects.filter(pk=step.pk).update(
        started_at=timezone.now() - timedelta(seconds=10), items_total=100, items_processed=50
    )
    text = text_of(fragment(client, step_url(step)))
    assert "items/s" in text and "left" in text


def test_long_values_are_cut_with_a_show_all_link(client):
    run = make_run()
    step = add_steps(run, 1)[0]
    Step.objects.filter(pk=step.pk).update(input={"blob": "x" * 50_000})
    html = fragment(client, step_url(step))
    assert "Showing the first 20,000 of 50,0" in html and "full=input" in html
    assert "x" * 20_100 not in html
    whole = fragment(client, step_url(step), full="input")
    assert "x" * 50_000 in whole and "Showing the first" not in whole


def test_truncated_step_names_its_fields(client):
    run = make_run()
    step = add_steps(run, 1)[0]
    Step.objects.filter(pk=step.pk).update(
        truncated=True, attributes={"truncated_fields": ["input"], "input_hash": {"v": "abc"}}
    )
    text = text_of(fragment(client, step_url(step)))
    assert "cut these values short: input" in text
    assert "input_hash" in text


def test_workflow_step_shows_the_whole_io_events_db_kept(client, tmp_path):
    # workflow.db cuts the input at 10,240 bytes (in a "€"); events.db has it whole.
    value = {"note": "€" * 4000, "tail": "the last words"}
    write_pair(tmp_path, [{"name": "load", "input": value, "output": {"ok": True}}])
    assert ingest_paths([tmp_path]).failed == []
    step = Step.objects.get(run__external_id=PAIR_ID, name="load")
    assert (step.input, step.truncated) == (value, False)
    html = fragment(client, step_url(step))
    assert "€" * 4000 in html and "the last words" in html
    assert "[truncated]" not in html and "cut these values short" not in text_of(html)


def test_workflow_step_without_captured_io_says_so_instead_of_empty_objects(client, samples):
    ingest_paths([samples / "workflow"])
    step = Step.objects.get(run__name="orders-queries:{id}", name="parse-request")
    assert (step.input, step.output, step.attributes["io_captured"]) == (None, None, False)
    html = fragment(client, step_url(step))
    assert html.count('<p class="muted none">not captured</p>') == 2
    assert "no X-Workflow-Trace: true header" in text_of(html)
    assert "<pre" not in html.split('class="values"')[1].split("</div>")[0]  # no "{}"
    traced = Step.objects.get(run__actor="bob@acme.io", name="parse-request")
    html = fragment(client, step_url(traced))
    assert "not captured" not in html and "X-Workflow-Trace" not in html


def test_step_panel_lists_its_logs_without_repeats(client):
    run = make_run()
    step = add_steps(run, 1)[0]
    add_logs(run, 6, step=step, every_duplicate=2)
    html = fragment(client, step_url(step))
    assert html.count('<div class="log-message">') == 3


def test_panel_close_returns_an_empty_slot(client):
    run = make_run()
    response = client.get(run_url(run), headers={**HX, "HX-Target": "step-panel"})
    slot = '<aside id="step-panel" class="step-slot" aria-live="polite"></aside>'
    assert response.content.decode() == slot


# --- live header --------------------------------------------------------------------------


def test_running_run_polls_its_header_until_it_ends(client):
    run = make_run(status="running", finished_at=None, duration_ms=None)
    Run.objects.filter(pk=run.pk).update(source_updated_at=timezone.now())
    html = page(client, run_url(run))
    assert 'hx-trigger="every 5s"' in html
    headers = {**HX, "HX-Target": "run-header"}
    live = client.get(run_url(run), {"was": "running"}, headers=headers)
    assert live.status_code == 200 and 'hx-trigger="every' in live.content.decode()
    Run.objects.filter(pk=run.pk).update(status="succeeded", finished_at=T0)
    ended = client.get(run_url(run), {"was": "running"}, headers=headers)
    assert ended.status_code == 286  # htmx stops polling
    body = ended.content.decode()
    assert "hx-trigger" not in body and "The run has ended" in body


def test_stale_run_does_not_poll(client):
    run = make_run(status="running", finished_at=None)
    Run.objects.filter(pk=run.pk).update(source_updated_at=timezone.now() - timedelta(hours=3))
    html = page(client, run_url(run))
    assert 'hx-trigger="every' not in html and "stale" in html


def running_run_written(ago: timedelta, settings) -> Run:
    """A run started two hours ago, still "running", last written `ago`; one step
    done, one started 90 minutes ago and still running."""
    settings.TRACER_STALE_AFTER = timedelta(seconds=600)
    now = timezone.now()
    run = make_run(
        status="running",
        started_at=now - timedelta(hours=2),
        finished_at=None,
        duration_ms=None,
        source_updated_at=now - ago,
    )
    done, open_ = add_steps(run, 2)
    Step.objects.filter(pk=done.pk).update(started_at=now - timedelta(hours=2))
    Step.objects.filter(pk=open_.pk).update(
        started_at=now - timedelta(minutes=90), status="running", duration_ms=None
    )
    return run


@pytest.mark.parametrize(
    ("written", "stale", "elapsed"),
    [
        (timedelta(hours=1), True, "1h 0m until its last write"),
        (timedelta(0), False, "2h 0m so far"),
    ],
    ids=["stale", "live"],
)
def test_a_stale_runs_clock_stops_at_its_last_write(client, settings, written, stale, elapsed):
    run = running_run_written(written, settings)
    assert run.is_stale is stale
    assert abs(run.live_until - (timezone.now() - written)) < timedelta(seconds=5)
    header = text_of(page(client, run_url(run)))
    assert f"Duration {elapsed}" in header
    response = client.get(run_url(run, "traces:run-timeline"), headers=HX)
    timeline = response.context["timeline"]
    axis_hours = (2 if not stale else 1) * 3_600_000
    assert abs(timeline["span_ms"] - axis_hours) < 5000
    running_step = timeline["rows"][1]
    step_ms = (30 if stale else 90) * 60_000
    assert abs(running_step.bar["duration_ms"] - step_ms) < 5000


def test_a_stale_runs_step_rate_is_measured_until_its_last_write(client, settings):
    run = running_run_written(timedelta(hours=1), settings)
    step = run.steps.get(status="running")  # started 90 minutes ago, 30 of them before the write
    Step.objects.filter(pk=step.pk).update(items_total=100, items_processed=18)
    panel = client.get(step_url(step), headers=HX).context["panel"]["progress"]
    assert abs(panel["rate"] - 18 / 1800) < 0.0002  # not 18 / 5400 (measured until now)
    assert panel["eta_ms"] is None  # a stale run has no time left to estimate


def test_live_until_is_none_for_a_run_that_is_not_running():
    assert make_run().live_until is None


# --- cost: the queries do not grow with the run --------------------------------------------


def big_and_small_runs():
    small, big = make_run(), make_run()
    for run, count in ((small, 5), (big, 2000)):
        roots = add_steps(run, count)
        add_steps(run, count, parent=roots[0])
        add_logs(run, count)
    # The minimap's read model, as the store keeps it for a run this big.
    big.refresh_from_db()
    minimaps.store([(big.pk, big.step_count)])
    return small, big


def test_run_page_query_count_does_not_depend_on_the_number_of_steps(
    client, django_assert_num_queries
):
    small, big = big_and_small_runs()
    for run in (small, big):
        # The run, one window of roots, their groups, whether it has a previous run.
        with django_assert_num_queries(4):
            client.get(run_url(run))
        with django_assert_num_queries(3):
            client.get(run_url(run), {"failed": "1"}, headers=HX)


def test_fragment_query_counts_do_not_depend_on_the_number_of_steps(
    client, django_assert_num_queries, django_assert_max_num_queries
):
    small, big = big_and_small_runs()
    for run in (small, big):
        first = Step.objects.get(run=run, key="0")
        with django_assert_num_queries(3):  # the parent, one window of children, groups
            client.get(step_url(first, "traces:step-children"), headers=HX)
        # The run, whether its steps have times (runs made here, not by the store), one
        # window of steps, the long and the open-ended ones begun before it, the
        # minimap's sample and failed steps, the steps with no start (last page), the
        # window's repeated names (what tells siblings apart, as the tree's rows say).
        with django_assert_max_num_queries(9):
            client.get(run_url(run, "traces:run-timeline"), headers=HX)
        with django_assert_num_queries(3):  # the run, one window of lines, its repeats
            client.get(run_url(run, "traces:run-logs"), headers=HX)
        with django_assert_num_queries(2):  # the step with its run, its logs
            client.get(step_url(first), headers=HX)
        # + the roots around it and their groups, whether the run has a previous one
        with django_assert_num_queries(5):
            client.get(step_url(first))


def test_a_big_run_opens_with_only_a_window_of_its_steps(client):
    _, big = big_and_small_runs()
    html = page(client, run_url(big))
    assert html.count('class="tree-item') == 200


# --- hostile content ----------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "\u202egnp.exe",
]


def hostile_run() -> tuple[Run, Step]:
    long_line = "A" * 100_000
    run = make_run(
        name=HOSTILE[0],
        type=HOSTILE[1],
        trigger=HOSTILE[2],
        actor=HOSTILE[3],
        error=HOSTILE[1] + long_line,
        input={"html": HOSTILE[0], "long": long_line},
        output_counters={HOSTILE[0]: 3},
        attributes={HOSTILE[1]: HOSTILE[2]},
        status="failed",
    )
    step = add_steps(run, 1, name=HOSTILE[1], type=HOSTILE[0], status="failed")[0]
    Step.objects.filter(pk=step.pk).update(
        error=HOSTILE[0],
        input={"x": HOSTILE[1]},
        output=long_line,
        entity_type="order",
        entity_id=HOSTILE[2],
        attributes={HOSTILE[0]: HOSTILE[1], "nested": {"k": HOSTILE[0]}},
        retry_of=HOSTILE[2],
    )
    child = add_steps(run, 1, parent=step, name=HOSTILE[3])[0]
    Call.objects.create(
        step=step, run=run, key="c1", position=0, tool=HOSTILE[0], operation=HOSTILE[1],
        status="failed", input={"q": HOSTILE[0]}, error=HOSTILE[1],
    )  # fmt: skip
    Step.objects.filter(pk=step.pk).update(call_count=1)
    LogEntry.objects.create(
        run=run, step=step, seq=1, level="error", message=HOSTILE[0] + long_line,
        fields={"f": HOSTILE[1]},
    )  # fmt: skip
    Run.objects.filter(pk=run.pk).update(log_count=1)
    return run, child


def assert_inert(html: str):
    assert "<script>alert" not in html
    assert "<img" not in html  # the text is there, escaped: &lt;img src=x ...
    assert 'href="javascript:' not in html and "href='javascript:" not in html
    assert "style=" not in html
    # Trace text is isolated from the layout's direction.
    if "\u202e" in html:
        assert "<bdi>\u202egnp.exe</bdi>" in html


@pytest.mark.parametrize("tab", ["tree", "timeline", "logs", "io", "attributes"])
def test_hostile_content_renders_as_text_on_every_tab(client, tab):
    run, _ = hostile_run()
    html = page(client, run_url(run), tab=tab)
    assert_inert(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_hostile_content_in_the_step_panel_and_children(client):
    _, child = hostile_run()
    parent = child.parent
    for html in (
        fragment(client, step_url(parent)),
        page(client, step_url(parent)),
        fragment(client, step_url(parent, "traces:step-children")),
        page(client, step_url(child)),
    ):
        assert_inert(html)
    panel = fragment(client, step_url(parent))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in panel
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in panel
    # The entity id is a path segment of a link to the entity, never a scheme.
    assert reverse("traces:entity-detail", args=["order", HOSTILE[2]]) in panel
    # The long output is cut with a way to see it all.
    assert "show all" in panel


def test_hostile_json_export_is_json(client):
    run, _ = hostile_run()
    data = client.get(run_url(run), {"format": "json"}, follow=True).json()
    assert data["name"] == HOSTILE[0]


@pytest.mark.django_db
def test_a_run_failed_by_its_source_alone_says_so_plainly(client):
    run = make_runs(1, status="failed")[0]
    Run.objects.filter(pk=run.pk).update(raw_status="<exit 3>", error="", items_failed=15)
    html = " ".join(client.get(run.get_absolute_url()).content.decode().split())
    assert (
        "The source marked this run failed (its own status: "
        "<code><bdi>&lt;exit 3&gt;</bdi></code>); no step failed or recorded an error, "
        "but 15 items failed." in html
    )
    Run.objects.filter(pk=run.pk).update(error="disk full")
    html = client.get(run.get_absolute_url()).content.decode()
    assert "disk full" in html and "The source marked this run failed" not in html


def test_a_step_whose_items_failed_shows_it_and_is_kept_by_failed_only(client, samples):
    """The runs sample's first sync_stripe run: process_charges completed, 2 items failed."""
    ingest_paths([samples / "runs"])
    run = Run.objects.get(external_id="01KJPJ3KR08985FSGD7GGHMB1Y")
    step = run.steps.get(name="process_charges")
    assert (step.status, step.items_failed, step.failed_subtree) == ("succeeded", 2, True)
    html = page(client, run_url(run), failed="1")
    text = text_of(html)
    assert "process_charges" in text and "No step failed" not in text
    assert "✗ 2 items" in text  # the tree row and the header both say so
    assert run.steps_items_failed == 2
    header = text_of(html[: html.index('id="run-tabs"')])
    assert "✗ 2 items" in header
    assert "items failed in this step, though its own status is succeeded" in html


def test_stored_steps_with_failed_items_are_marked_by_the_migration(samples):
    import importlib

    from django.db import connection

    ingest_paths([samples / "runs"])
    Step.objects.update(failed_subtree=False)
    migration = importlib.import_module("traces.migrations.0016_items_failed_subtree")
    with connection.cursor() as cursor:
        cursor.execute(migration.MARK)
    marked = set(Step.objects.filter(failed_subtree=True).values_list("name", flat=True))
    assert marked == set(Step.objects.filter(items_failed__gt=0).values_list("name", flat=True))
