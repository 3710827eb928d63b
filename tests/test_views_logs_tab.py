"""The run page's Logs tab: the step picker, a name the run lacks, and "Logs (N)"
reconciled with the rows the tab lists."""

import re

import pytest

from traces.ingest.loader import ingest_paths
from traces.models import LogEntry, Run, Step
from traces.queries import logs as log_queries

from .test_views_run_detail import add_logs, add_steps, fragment, make_run, page, run_url, text_of

pytestmark = pytest.mark.django_db


def options(html: str) -> list[tuple[str, str]]:
    datalist = re.search(r'<datalist id="log-step-names">(.*?)</datalist>', html).group(1)
    return re.findall(r'<option value="([^"]*)">([^<]*)</option>', datalist)


def test_the_picker_suggests_every_step_name_of_the_run_with_its_steps_and_lines(client):
    run = make_run()
    steps = add_steps(run, 6)
    for step, name in zip(steps, ["load", "load", "load", "parse", "save", ""], strict=True):
        Step.objects.filter(pk=step.pk).update(name=name)
    add_logs(run, 250)  # more than a window: the names are the run's, not the page's
    LogEntry.objects.filter(run=run, seq__gt=240).update(step=steps[3])  # parse: lines 241-250
    LogEntry.objects.filter(run=run, seq__lte=2).update(step=steps[1])  # load: 2 lines
    html = page(client, run_url(run, "traces:run-logs"))
    assert options(html) == [
        ("load", "2 lines · 3 steps"),
        ("parse", "10 lines · 1 step"),
        ("save", "0 lines · 1 step"),
    ]
    # Picking a name keeps every step of it; the list stays the run's.
    of_load = page(client, run_url(run, "traces:run-logs"), step="load")
    assert of_load.count("<tr data-row") == 2 and len(options(of_load)) == 3


def test_a_big_run_s_names_are_counted_up_to_a_cap_and_a_name_picks_all_its_steps(
    client, monkeypatch
):
    monkeypatch.setattr(log_queries, "STEPS_COUNTED", 10)
    monkeypatch.setattr(log_queries, "LINES_BY_NAME", 5)
    run = make_run()
    steps = add_steps(run, 1200, name="fetch")
    add_logs(run, 6)
    LogEntry.objects.filter(run=run).update(step=steps[1150])
    html = page(client, run_url(run, "traces:run-logs"))
    # 6 lines > LINES_BY_NAME: the lines per name are not counted.
    assert options(html) == [("fetch", "10+ steps")]
    # The 1,151st step of that name is picked (no cap on a name's steps).
    assert (
        fragment(client, run_url(run, "traces:run-logs"), step="fetch").count("<tr data-row") == 6
    )


def test_the_picker_reads_a_fixed_number_of_queries_however_big_the_run(
    client, django_assert_num_queries
):
    run = make_run()
    steps = add_steps(run, 600, name="a")
    Step.objects.filter(pk__in=[step.pk for step in steps[::2]]).update(name="b")
    add_logs(run, 20)
    # the run, the window, its repeats, the previous run (the header's compare link),
    # the levels, the names, their lines
    with django_assert_num_queries(7):
        page(client, run_url(run, "traces:run-logs"))


def test_a_name_the_run_lacks_is_said_with_the_names_like_it_and_no_error(client):
    run = make_run()
    steps = add_steps(run, 2)
    Step.objects.filter(pk=steps[0].pk).update(name="upsert_batch")
    add_logs(run, 3, step=steps[0])
    url = run_url(run, "traces:run-logs")
    response = client.get(url, {"step": "UPSERT"}, headers={"HX-Request": "true"})
    # Said in the rows it replaces, not in the flash area where it would stay.
    assert response.status_code == 200 and "HX-Retarget" not in response
    html = response.content.decode()
    assert "This run has no step named or keyed “<bdi>UPSERT</bdi>”." in html
    assert "Its steps named like it: <a" in html and "?step=upsert_batch" in html
    # The next value replaces the notice.
    after = fragment(client, url, step="upsert_batch")
    assert "no step named" not in after and after.count("<tr data-row") == 3
    nothing_like = fragment(client, url, step="zzz")
    assert "Pick one of its step names from the list." in nothing_like


def test_logs_n_reconciles_with_the_rows_the_tab_lists(client, samples):
    """A workflow sample with repeated lines: the tab's number = the rows listed
    over every page + the repeated rows it hides; shown, they are all listed."""
    ingest_paths([samples / "workflow"])
    run = Run.objects.filter(format="workflow", logs__duplicate=True).distinct().first()
    repeated = LogEntry.objects.filter(run=run, duplicate=True).count()
    assert 0 < repeated < run.log_count
    url = run_url(run, "traces:run-logs")
    html = page(client, url)
    assert f"Logs ({run.log_count:,})" in html
    listed = run.log_count - repeated
    said = f"{run.log_count:,} lines in this run: {listed:,} listed here and {repeated:,} repeating"
    assert said in text_of(html)
    assert html.count("<tr data-row") == listed  # the sample's run fits one window
    shown = fragment(client, url, duplicates="1")
    assert shown.count("<tr data-row") == run.log_count
    assert f"all listed, {repeated:,} of them repeating an earlier line" in text_of(shown)


def test_listed_plus_hidden_is_the_tab_s_number_across_pages(client):
    run = make_run()
    add_logs(run, 450, every_duplicate=3)  # lines 1, 4, 7 ... repeat an earlier one
    Run.objects.filter(pk=run.pk).update(log_count=450)
    url = run_url(run, "traces:run-logs")
    html, listed = page(client, url), 0
    assert "Logs (450)" in html
    while True:
        listed += html.count("<tr data-row")
        later = re.search(r'<a href="([^"]+)"[^>]*>later lines', html)
        if not later:
            break
        html = fragment(client, later.group(1).replace("&amp;", "&"))
    hidden = LogEntry.objects.filter(run=run, duplicate=True).count()
    assert listed == 300 and hidden == 150
    assert "450 lines in this run: 300 listed here and 150 repeating" in text_of(html)
