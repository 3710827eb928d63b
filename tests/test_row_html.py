"""The tree and timeline rows rendered in Python (traces/templatetags/row_html.py) and
the URLs their view builds for a window's keys (views.common.key_urls): the same
links reverse() gives, and every value from a trace escaped, keys included."""

import pytest
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape

from tests.factories import make_runs, make_steps
from traces.key_urls import key_urls
from traces.models import Step
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
