"""The tree and timeline rows rendered in Python (traces/templatetags/row_html.py) and
the URLs their view builds for a window's keys (views.common.key_urls): the same
links reverse() gives, and every value from a trace escaped, keys included."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import models
from django.template import Context, RequestContext, Template
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape

from tests.factories import BASE_TIME, make_runs, make_steps
from traces.key_urls import key_urls
from traces.models import Run, Step
from traces.templatetags.traces_extras import grouped, progress_html

pytestmark = pytest.mark.django_db

KEYS = [
    "s.1", "a/b/c", "/lead", "trail/", "x y", "ü", "a%b", "a?b=c&d", "#frag", "it's", '"q"',
    "<b>", "..", "@:~-_", "a\nb", "tab\there",
]  # fmt: skip


def reversed_or_blank(name: str, run_id: int, key: str) -> str:
    try:
        return reverse(name, args=[run_id, key])
    except NoReverseMatch:
        return ""


@pytest.mark.parametrize("name", ["traces:step-detail", "traces:step-children"])
def test_key_urls_are_the_urls_reverse_gives(name):
    url_of = key_urls(name, 42)
    assert [url_of(key) for key in KEYS] == [reversed_or_blank(name, 42, key) for key in KEYS]
    assert url_of("a\nb") == ""


HOSTILE_KEY = '<script>alert(1)</script>"&'


def hostile_keyed_run():
    run = make_runs(1)[0]
    root = make_steps(run, 1, status="failed")[0]
    Step.objects.filter(pk=root.pk).update(
        key=HOSTILE_KEY, name="", type="<i>t</i>", child_count=1, error="<b>boom</b>"
    )
    make_steps(run, 1, parent=root)
    return run


@pytest.mark.parametrize("tab", ["tree", "timeline"])
def test_a_hostile_key_is_shown_and_linked_as_text(client, tab):
    run = hostile_keyed_run()
    html = client.get(reverse("traces:run-detail", args=[run.pk]), {"tab": tab}).content.decode()
    assert "<script>alert" not in html and "<b>boom" not in html and "<i>t" not in html
    assert "<bdi>&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;</bdi>" in html
    quoted = reverse("traces:step-detail", args=[run.pk, HOSTILE_KEY])
    assert "&" in quoted and f'href="{escape(quoted)}' in html


def test_the_progress_bar_is_the_markup_of_its_template_tag():
    html = progress_html(10, 6, 2, 1, wide=True, label='<x>"')
    assert html == (
        '<span class="progress-row">\n'
        '  <svg class="progress wide" viewBox="0 0 100 1" preserveAspectRatio="none" role="img"'
        ' aria-label="&lt;x&gt;&quot;: 6 succeeded, 2 failed, 1 in progress of 10">\n'
        '    <rect class="p-ok" x="0.000" y="0" width="60.000" height="1"/>'
        '<rect class="p-fail" x="60.000" y="0" width="20.000" height="1"/>'
        '<rect class="p-run" x="80.000" y="0" width="10.000" height="1"/>\n'
        "  </svg>\n"
        "</span>\n"
    )


def test_grouped_numbers_are_what_intcomma_shows():
    assert [grouped(n) for n in (0, 999, 1000, 1234567, -5000)] == [
        "0", "999", "1,000", "1,234,567", "-5,000",
    ]  # fmt: skip
    assert grouped("?") == "?"
    assert grouped("<b>") == "&lt;b&gt;"


def test_entity_link_rows_escape_every_trace_value():
    from traces.models import EntityLink
    from traces.templatetags.row_html import entity_link_rows

    run = make_runs(1, name='<img src=x onerror="1">')[0]
    step = make_steps(run, 1)[0]
    Step.objects.filter(pk=step.pk).update(name="<b>step</b>", key=HOSTILE_KEY)
    step.refresh_from_db()
    EntityLink.objects.create(
        run=run, step=step, link_type='<i>"odd"</i>', entity_type="order", entity_id="o1",
        external_id="<ext>&",
    )  # fmt: skip
    links = EntityLink.objects.select_related("step", "run").annotate(when=models.F("seen_at"))
    html = str(entity_link_rows(list(links)))
    for hostile in ('<img src=x onerror="1">', "<b>step</b>", '<i>"odd"</i>', "<ext>&"):
        assert hostile not in html
        assert escape(hostile) in html
    assert escape(reverse("traces:step-detail", args=[run.pk, HOSTILE_KEY])) in html
    assert str(entity_link_rows([])).endswith("No links on this page.</td></tr>")


def test_key_urls_follow_the_script_prefix_they_are_served_under():
    from django.urls import get_script_prefix, set_script_prefix

    from traces.key_urls import key_url

    before = get_script_prefix()
    plain = key_url("traces:step-detail", 7, "s.1")
    try:
        set_script_prefix("/traces-site/")
        assert key_url("traces:step-detail", 7, "s.1") == "/traces-site" + plain
    finally:
        set_script_prefix(before)
    assert key_url("traces:step-detail", 7, "s.1") == plain


def same_markup(html: str) -> str:
    """Markup compared as a browser reads it: whitespace between and inside tags aside."""
    html = re.sub(r"\s+", " ", str(html))
    return re.sub(r"\s*([<>])\s*", r"\1", html)


# The causes table's rows as step_list.html rendered them before row_html.cause_rows.
CAUSE_ROWS_TEMPLATE = """{% load humanize traces_extras %}
{% for row in spark_rows %}{% with group=row.group %}
  {% querystring error_group=group.text status="failed" after=None before=None group=None as group_href %}
  <tr {% if group.text == error_group %}class="selected" aria-current="true"{% endif %}>
    <td class="num">{{ group.count|intcomma }}</td>
    <td class="name"><a href="{{ group_href }}" hx-get="{{ group_href }}"><code><bdi>{{ group.text }}</bdi></code></a>
      {% if group.example and group.example != group.text %}<div class="muted">e.g. <bdi>{{ group.example|truncatechars:120 }}</bdi></div>{% endif %}</td>
    <td>{% if row.bars %}<svg class="spark" viewBox="0 0 {{ row.width }} 16" preserveAspectRatio="none" role="img" aria-label="{{ group.count }} failure{{ group.count|pluralize }} from {{ group.first_seen|date:'Y-m-d H:i' }} to {{ group.last_seen|date:'Y-m-d H:i' }}">
      {% for bar in row.bars %}{% if bar.n %}<rect x="{{ bar.x }}" y="{{ bar.y }}" width="0.8" height="{{ bar.height }}"><title>{{ bar.at|date:"Y-m-d H:i" }} · {{ bar.n }}</title></rect>{% endif %}{% endfor %}
    </svg>{% elif group.first_seen and spark_unit %}<span class="muted">within one {{ spark_unit }}</span>{% else %}<span class="muted">—</span>{% endif %}</td>
    <td class="nowrap" title="{{ group.first_seen|date:'Y-m-d H:i:s.u e' }}">{{ group.first_seen|since }}</td>
    <td class="nowrap" title="{{ group.last_seen|date:'Y-m-d H:i:s.u e' }}">{{ group.last_seen|since }}</td>
  </tr>
{% endwith %}{% endfor %}"""  # noqa: E501


def hostile_cause_groups(spread: int):
    from traces.queries.errors import ErrorGroup, ErrorGroups, add_sparklines

    day = BASE_TIME.date()
    groups = [
        ErrorGroup(
            text='<script>x</script> & "q"', count=12345, first_seen=BASE_TIME,
            last_seen=BASE_TIME + timedelta(days=spread, microseconds=7),
            example="<b>boom</b> " + "long " * 40, days={day: 5, day + timedelta(days=spread): 7},
        ),
        ErrorGroup(text="same as example", count=1, first_seen=BASE_TIME, last_seen=BASE_TIME,
                   example="same as example", days={day: 1}),
        ErrorGroup(text="no time", count=2, example="e.g. <i>", days={}),
    ]  # fmt: skip
    result = ErrorGroups(groups=groups, source="days")
    add_sparklines(result)
    return result


@pytest.mark.parametrize(
    ("query", "spread"),
    [("status=failed", 3), ("status=failed&error_group=no+time&format=runs&after=x", 3), ("", 0)],
)
def test_cause_rows_are_the_markup_the_template_gave(rf, query, spread):
    from traces.templatetags.row_html import cause_rows
    from traces.views.steps import _spark_rows

    groups = hostile_cause_groups(spread)
    request = rf.get(f"/steps/?{query}")
    context = {
        "spark_rows": _spark_rows(groups),
        "error_group": request.GET.get("error_group", ""),
        "spark_unit": groups.spark_unit,
    }
    old = Template(CAUSE_ROWS_TEMPLATE).render(RequestContext(request, context))
    new = cause_rows(RequestContext(request, context), *context.values())
    assert same_markup(new) == same_markup(old)
    assert "<script>" not in new and "<b>boom" not in new and "&lt;script&gt;" in new
    assert new.count("<tr") == 3
    if spread:  # bars on a 4-day axis: 2 + 1 + none
        assert new.count("<rect ") == 3 and new.count("<svg") == 3
    else:  # one day: no line
        assert new.count("within one day") == 2 and "<svg" not in new


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/New_York"])
def test_row_dates_are_what_the_date_filter_shows(settings, zone):
    from django.utils import timezone
    from django.utils.dateformat import format as date_format

    from traces.templatetags.row_html import EXACT, MINUTE, SECOND, _date

    moments = [
        BASE_TIME, BASE_TIME.replace(microsecond=5), datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 0, 1, tzinfo=UTC), datetime(9, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5),
    ]  # fmt: skip
    with timezone.override(zone):
        for moment in moments:
            local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
            for form in (EXACT, SECOND, MINUTE):
                assert _date(moment, form) == escape(date_format(local, form)), (moment, form)
    assert _date(None, EXACT) == ""


# An entity's subject rows as entity_detail.html rendered them before row_html's.
SUBJECT_ROWS_TEMPLATE = """{% load traces_extras %}
{% for step in steps %}
<tr data-row tabindex="-1">
  <td class="name">{% url 'traces:step-detail' step.run_id step.key as step_href %}
<span class="step-cell">{% include "traces/_status.html" with status=step.status %}
  {% if step_href %}<a data-row-link href="{{ step_href }}"><bdi>{{ step.name|default:step.key }}</bdi></a>{% else %}<bdi>{{ step.name|default:step.key }}</bdi>{% endif %}</span></td>
  <td class="name">{% with run=step.run %}<a href="{% url 'traces:run-detail' run.pk %}"><bdi>{{ run.name|default:run.external_id }}</bdi></a>
<div class="muted">{{ run.status|status_icon }} {{ run.status }} · {{ run.format }}</div>{% endwith %}</td>
  <td class="error-cell">{% if step.error_head %}<bdi>{{ step.error_head|truncatechars:200 }}</bdi>{% endif %}</td>
  {% with when=step.when %}<td class="nowrap" title="{{ when|date:'Y-m-d H:i:s.u e' }}">{% if when %}{{ when|date:"Y-m-d H:i:s" }}<div class="muted">{{ when|since }}</div>{% else %}—{% endif %}</td>{% endwith %}
  <td class="num">{{ step.duration_ms|human_duration }}</td>
</tr>
{% empty %}
<tr><td colspan="5" class="empty">No steps on this page.</td></tr>
{% endfor %}"""  # noqa: E501


def test_entity_subject_rows_are_the_markup_the_template_gave():
    from tests.factories import count_entities
    from traces.queries.entities import subject_step_rows
    from traces.templatetags.row_html import entity_subject_rows

    run = make_runs(1, name='<img src=x onerror="1">')[0]
    steps = make_steps(run, 4, status="failed", error=lambda i: f"<b>boom</b> {'x' * 150 * i}")
    for step, key in zip(steps, [HOSTILE_KEY, "a\nb", "plain", "x y"], strict=True):
        Step.objects.filter(pk=step.pk).update(
            key=key, name="" if key == "plain" else "<i>n</i>", entity_type="order",
            entity_id="o<1>", status="succeeded" if key == "x y" else "failed",
        )  # fmt: skip
    Step.objects.filter(pk=steps[2].pk).update(started_at=None, duration_ms=None, error="")
    Run.objects.filter(pk=run.pk).update(started_at=None)
    count_entities()
    rows = list(subject_step_rows("order", "o<1>"))
    assert len(rows) == 4
    old = Template(SUBJECT_ROWS_TEMPLATE).render(Context({"steps": rows}))
    new = entity_subject_rows(rows)
    assert same_markup(new) == same_markup(old)
    for hostile in ('<img src=x onerror="1">', "<i>n</i>", "<b>boom</b>", HOSTILE_KEY):
        assert hostile not in new
    assert escape(reverse("traces:step-detail", args=[run.pk, HOSTILE_KEY])) in new
    assert 'title="">—</td>' in new  # no time: neither the step's nor its run's
    assert same_markup(entity_subject_rows([])) == same_markup(
        Template(SUBJECT_ROWS_TEMPLATE).render(Context({"steps": []}))
    )


# The search page's rows as search.html rendered them before row_html's.
SEARCH_ROWS_TEMPLATE = """{% load traces_extras %}
{% for run in runs %}
      <tr data-row tabindex="-1">
        <td class="status-cell">{% include "traces/_status.html" with status=run.status stale=run.is_stale %}</td>
        <td class="name lead">{% if run.exact %}<span class="badge flag">exact</span> {% endif %}<a data-row-link href="{{ run.get_absolute_url }}"><bdi>{{ run.name|default:run.external_id }}</bdi></a><div class="muted mono" title="{{ run.external_id }}"><bdi>{{ run.external_id|truncatechars:60 }}</bdi></div></td>
        <td data-label="Format">{{ run.format }}</td>
        <td class="name" data-label="Type">{% if run.type %}<bdi>{{ run.type }}</bdi>{% else %}—{% endif %}{% if run.actor %}<div class="muted"><bdi>{{ run.actor }}</bdi></div>{% endif %}</td>
        <td class="nowrap" data-label="Started" title="{{ run.started_at|date:'Y-m-d H:i:s.u e' }}">{% if run.started_at %}{% estimated_mark run %}{{ run.started_at|date:"Y-m-d H:i:s" }}{% else %}—{% endif %}</td>
        <td class="muted" data-label="Matched in">{{ run.matched_in }}</td>
      </tr>{% endfor %}
|{% for step in steps %}{% with step_href=step.url %}
      <tr data-row tabindex="-1">
        <td class="status-cell">{% include "traces/_status.html" with status=step.status %}</td>
        <td class="name lead">{% if step.exact %}<span class="badge flag">exact</span> {% endif %}{% if step_href %}<a data-row-link href="{{ step_href }}"><bdi>{{ step.name|default:step.key }}</bdi></a>{% else %}<bdi>{{ step.name|default:step.key }}</bdi>{% endif %}<div class="muted mono" title="{{ step.key }}"><bdi>{{ step.key|truncatechars:60 }}</bdi></div>
          {% if step.error_head %}<div class="muted error-cell"><bdi>{{ step.error_head|truncatechars:140 }}</bdi></div>{% endif %}</td>
        <td class="name" data-label="Run"><a href="{{ step.run.get_absolute_url }}"><bdi>{{ step.run.name|default:step.run.external_id }}</bdi></a><div class="muted">{{ step.run.format }}{% if step.run.type %} · <bdi>{{ step.run.type }}</bdi>{% endif %}</div></td>
        <td class="nowrap" data-label="Started" title="{{ step.started_at|date:'Y-m-d H:i:s.u e' }}">{% if step.started_at %}{{ step.started_at|date:"Y-m-d H:i:s" }}{% else %}—{% endif %}</td>
        <td class="muted" data-label="Matched in">{{ step.matched_in }}</td>
      </tr>{% endwith %}{% endfor %}"""  # noqa: E501


def test_search_rows_are_the_markup_the_template_gave():
    from traces.search.query import _runs_by_id, _steps_by_id, url_of
    from traces.templatetags.row_html import search_run_rows, search_step_rows

    hostile = '<img src=x onerror="1">'
    runs = make_runs(3, name=hostile, format="greentic")
    Run.objects.filter(pk=runs[0].pk).update(
        actor="<b>erin</b>", type="", external_id="x" * 70 + "<i>", times_estimated=True,
        status="running", source_updated_at=BASE_TIME,
    )  # fmt: skip
    Run.objects.filter(pk=runs[1].pk).update(started_at=None, name="", type="<t>")
    steps = make_steps(runs[0], 4, status="failed", error=lambda i: f"<b>boom</b> {'x' * 99 * i}")
    for step, key in zip(steps, [HOSTILE_KEY, "a\nb", "plain", "k" * 80], strict=True):
        Step.objects.filter(pk=step.pk).update(key=key, name="" if key == "plain" else "<i>n</i>")
    Step.objects.filter(pk=steps[2].pk).update(started_at=None, error="")
    found_runs = _runs_by_id([run.pk for run in runs])
    found_steps = _steps_by_id([step.pk for step in steps])
    for n, found in enumerate([*found_runs, *found_steps]):
        found.matched_in = "name, <error>"
        found.exact = n % 2 == 0
        found.url = url_of(found)
    old = Template(SEARCH_ROWS_TEMPLATE).render(Context({"runs": found_runs, "steps": found_steps}))
    new = f"{search_run_rows(found_runs)}\n|{search_step_rows(found_steps)}"
    assert same_markup(new) == same_markup(old)
    assert hostile not in new and "<b>" not in new and "<i>" not in new and "<t>" not in new
    assert "stale</span>" in new and 'class="estimated"' in new and new.count("exact</span>") == 4
    assert escape(reverse("traces:step-detail", args=[runs[0].pk, HOSTILE_KEY])) in new
    assert "a\nb" in new and 'href="' not in new.split("a\nb")[0].rsplit("<tr", 1)[-1]
