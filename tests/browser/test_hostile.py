"""Hostile content: traces of every format whose every string carries markup,
`javascript:` links, attribute breakers, a right-to-left override and very long
lines are ingested, then every page that shows them is visited in chromium. No
script from a trace may run, no dialog may open, no markup from a trace may
reach the DOM as elements or attributes, and no `javascript:` link may exist.

The traces are the samples, rewritten: every free-text string (names, ids, errors,
inputs/outputs, log messages, entity ids, attributes) becomes
`javascript:window.__pwned=1//<original><payloads>`, the same way everywhere so
that ids still match; status words, event types and timestamps stay as they are,
so the traces keep their shape and the ingest gives the same counts.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

PWN = "window.__pwned=1"
PAYLOADS = (
    f"<script>{PWN}</script>"
    f'<img src=x onerror="{PWN}">'
    f'"><svg onload={PWN}>'
    f"'><iframe src=javascript:{PWN}>"
    "\u202etxt.exe"
)
PREFIX = f"javascript:{PWN}//"
LONG_LINE = "A" * 5000  # one unbroken line: must wrap or scroll, never break the page
# Words a parser maps (statuses, record and event kinds, levels): kept, so the traces
# still parse as what they are.
STRUCTURAL_KEYS = {
    "status",
    "type",
    "event_type",
    "level",
    "link_type",
    "actor_type",
    "trigger",
    "trace_version",
    "algorithm",
    # OTLP: hex ids, times and integers as strings
    "traceId",
    "spanId",
    "parentSpanId",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "timeUnixNano",
    "intValue",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?$")
ERROR_KEYS = {"error", "message", "error_message"}
VALUE_KEYS = {"input", "inputs", "output", "payload", "meta", "metadata", "context", "details"}


# An entity type is one URL segment (/entities/<type>/<id>/): no "/" in it, or the
# entity has no page at all; this keeps the entity pages in the visit.
SEGMENT_PAYLOADS = f'<img src=x onerror="{PWN}">"><svg onload={PWN}>\u202e'


def hostile(text: str, key: str = "") -> str:
    if key in STRUCTURAL_KEYS or not text or TIMESTAMP.match(text):
        return text
    if key == "entity_type":
        return f"{text}{SEGMENT_PAYLOADS}"
    tail = f" {LONG_LINE}" if key in ERROR_KEYS else ""
    return f"{PREFIX}{text}{PAYLOADS}{tail}"


def hostile_json(value, key: str = ""):
    """Every string inside, rewritten; objects under input/output-like keys also get
    a hostile key of their own (keys are shown too)."""
    if isinstance(value, str):
        return hostile(value, key)
    if isinstance(value, list):
        return [hostile_json(item, key) for item in value]
    if isinstance(value, dict):
        out = {name: hostile_json(item, name) for name, item in value.items()}
        if key in VALUE_KEYS:
            out[f"<script>{PWN}</script>"] = f'<img src=x onerror="{PWN}">'
        return out
    return value


def hostile_text_column(value: str, column: str) -> str:
    """A SQLite text cell: JSON inside is rewritten as JSON, anything else as text."""
    if column in STRUCTURAL_KEYS or TIMESTAMP.match(value):
        return value
    if value[:1] in "{[":
        try:
            return json.dumps(hostile_json(json.loads(value), column))
        except ValueError:
            pass
    return hostile(value, column)


def hostile_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    for table in tables:
        columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
        rows = conn.execute(f'SELECT rowid, * FROM "{table}"').fetchall()
        for rowid, *values in rows:
            changed = {
                column: hostile_text_column(value, column)
                for column, value in zip(columns, values, strict=True)
                if isinstance(value, str)
            }
            if changed:
                assignments = ", ".join(f'"{column}" = ?' for column in changed)
                sql = f'UPDATE "{table}" SET {assignments} WHERE rowid = ?'
                conn.execute(sql, [*changed.values(), rowid])
    conn.commit()
    conn.close()


def write_hostile_traces(samples: Path, target: Path) -> Path:
    """Every format, rewritten hostile, under `target`."""
    for trace in sorted(samples.glob("greentic/*/trace.json")):
        out = target / "greentic" / trace.parent.name / "trace.json"
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps(hostile_json(json.loads(trace.read_text()))))
    for trace in sorted(samples.glob("duckflux/json/*.json"))[:4]:
        out = target / "duckflux" / trace.name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(hostile_json(json.loads(trace.read_text())), indent=2))
    for database in sorted(samples.glob("duckflux/sqlite/*.sqlite"))[:2]:
        shutil.copy(database, target / "duckflux" / database.name)
        hostile_sqlite(target / "duckflux" / database.name)
    lines = (samples / "traceos/traces.jsonl").read_text().splitlines()
    (target / "traceos").mkdir()
    (target / "traceos/traces.jsonl").write_text(
        "\n".join(json.dumps(hostile_json(json.loads(line))) for line in lines if line.strip())
    )
    (target / "otlp").mkdir()
    for sample in sorted(samples.glob("otlp/*.json*")):
        if sample.suffix == ".jsonl":
            lines = [json.dumps(hostile_json(json.loads(line))) for line in sample.open()]
            (target / "otlp" / sample.name).write_text("\n".join(lines) + "\n")
        else:
            document = hostile_json(json.loads(sample.read_text()))
            (target / "otlp" / sample.name).write_text(json.dumps(document))
    for folder, names in (("runs", ["runs.sqlite"]), ("workflow", ["workflow.db", "events.db"])):
        (target / folder).mkdir()
        for name in names:
            shutil.copy(samples / folder / name, target / folder / name)
            hostile_sqlite(target / folder / name)
    return target


# --- the visit -------------------------------------------------------------------------------

TABS = ("tree", "timeline", "critical", "logs", "io", "attributes")
SHOWN = f"<script>{PWN}</script>"  # as text, on the page

# Records what a page did that it must not: runs in every document before its scripts.
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__csp.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""

# Anything from a trace that became markup: handlers, javascript: URLs, inline
# scripts, frames, the payload's image.
INJECTED = """() => {
  const found = [];
  const urlAttrs = ["href", "src", "action", "formaction", "xlink:href", "data", "srcdoc"];
  for (const el of document.querySelectorAll("*")) {
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      const value = attr.value.trim().toLowerCase();
      if (name.startsWith("on")) found.push(`${el.tagName} ${name}`);
      if (urlAttrs.includes(name) && value.startsWith("javascript:")) {
        found.push(`${el.tagName} ${name}=${value.slice(0, 40)}`);
      }
    }
    const tag = el.tagName.toUpperCase();
    if (tag === "SCRIPT" && !el.src && el.type !== "application/json") found.push("inline script");
    if (["IFRAME", "OBJECT", "EMBED", "BASE"].includes(tag)) found.push(tag);
    if (tag === "IMG" && el.getAttribute("src") === "x") found.push("IMG src=x");
  }
  return found;
}"""


@pytest.fixture
def hostile_traces(transactional_db, samples, tmp_path):
    from traces.ingest.loader import ingest_paths
    from traces.models import EntityLink, LogEntry, Run, Step

    report = ingest_paths([write_hostile_traces(samples, tmp_path / "hostile")])
    assert report.failed == []
    formats = set(Run.objects.values_list("format", flat=True))
    assert formats == {"duckflux", "greentic", "runs", "traceos", "workflow", "otlp"}
    # Every kind of field a page shows carries the payloads.
    for model, field in (
        (Run, "name"),
        (Run, "external_id"),
        (Run, "error"),
        (Step, "name"),
        (Step, "error"),
        (LogEntry, "message"),
        (EntityLink, "entity_id"),
    ):
        assert model.objects.filter(**{f"{field}__contains": SHOWN}).exists(), (model, field)
    assert Run.objects.filter(name__startswith="javascript:").exists()
    assert EntityLink.objects.filter(entity_type__contains=SEGMENT_PAYLOADS).exists()
    return report


@pytest.fixture
def guarded(page):
    """The page, watched: dialogs are recorded (and dismissed), violations counted."""
    dialogs: list[str] = []

    def on_dialog(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.add_init_script(WATCH)
    page.dialogs = dialogs
    return page


def problems_on(page, where: str) -> list[str]:
    """What a trace made the page do; [] when it stayed inert."""
    found = []
    if page.evaluate("window.__pwned") is not None:
        found.append(f"a script from a trace ran on {where}")
    if page.dialogs:
        found.append(f"a dialog opened on {where}: {page.dialogs}")
    if violations := page.evaluate("window.__csp"):
        found.append(f"CSP violations on {where}: {violations}")
    if injected := page.evaluate(INJECTED):
        found.append(f"trace markup became elements on {where}: {injected[:5]}")
    if page.locator("a[href^='javascript:' i]").count():
        found.append(f"a javascript: link on {where}")
    return found


def assert_inert(page, where: str) -> None:
    assert problems_on(page, where) == []


def visit(page, url: str) -> tuple[list[str], list[str]]:
    """(what the trace made the page do, what is wrong with the answer itself)."""
    response = page.goto(url)
    answer = []
    if response.status != 200:
        answer.append(f"{url}: {response.status}")
    policy = response.headers["content-security-policy"]
    if "unsafe-inline" in policy or "unsafe-eval" in policy:
        answer.append(f"{url}: weak policy {policy}")
    return problems_on(page, url), answer


def pages_to_visit(tabs: tuple[str, ...] = TABS) -> list[str]:
    from django.urls import reverse

    from traces.models import EntityLink, Run, TraceFile
    from traces.views.types import type_url

    urls = [
        reverse("traces:run-list"),
        reverse("traces:run-list") + "?q=" + SHOWN.replace("<", "%3C").replace(">", "%3E"),
        reverse("traces:step-list") + "?status=failed",
        reverse("traces:step-list") + "?status=failed&group=error",
        reverse("traces:entity-list"),
        reverse("traces:file-list"),
    ]
    for link in EntityLink.objects.order_by("pk")[:2]:
        urls.append(reverse("traces:entity-detail", args=[link.entity_type, link.entity_id]))
    for trace_file in TraceFile.objects.order_by("pk")[:3]:
        urls.append(trace_file.get_absolute_url())
    for format_name in ("duckflux", "greentic", "runs", "traceos", "workflow", "otlp"):
        run = Run.objects.filter(format=format_name).order_by("-steps_failed", "-step_count")[0]
        urls += [f"{run.get_absolute_url()}?tab={tab}" for tab in tabs]
        step = run.steps.order_by("-status", "seq").filter(status="failed").first()
        step = step or run.steps.order_by("seq").first()
        urls.append(step.get_absolute_url())
        # Compared with another run of its format (both ways: each side's names shown),
        # and its type's trends.
        other = Run.objects.filter(format=format_name).exclude(pk=run.pk).order_by("pk").first()
        if other is not None:
            compare = reverse("traces:compare")
            urls += [f"{compare}?a={other.pk}&b={run.pk}", f"{compare}?a={run.pk}&b={other.pk}"]
        if type_url(run.type):
            urls.append(type_url(run.type))
    urls.append(reverse("traces:type-list"))
    return urls


def test_no_script_from_a_trace_runs_on_any_page(guarded, hostile_traces, reliability_rows):
    from traces.models import Run

    urls = pages_to_visit()
    scripts, answers = {}, {}
    for url in urls:
        ran, wrong = visit(guarded, url)
        scripts |= {url: ran} if ran else {}
        answers |= {url: wrong} if wrong else {}

    reliability_rows.add(
        "hostile",
        "hostile content: every format's strings carrying script, handler, `javascript:` and "
        "RTL payloads, every page visited in chromium",
        f"{Run.objects.count()} runs, {len(urls)} pages",
        errors=len(answers),
        scripts=len(scripts),
        notes="also with the CSP switched off in the browser, and through htmx swaps",
    )
    assert len(urls) >= 35
    assert scripts == {} and answers == {}

    # Shown as text, whole: the markup, the javascript: prefix, the RTL override.
    guarded.goto("/")
    text = guarded.locator("main").inner_text()
    assert SHOWN in text and f"javascript:{PWN}//" in text
    run = Run.objects.filter(format="runs").order_by("-steps_failed")[0]
    guarded.goto(run.get_absolute_url())
    header = guarded.locator("#run-header").inner_text()
    assert SHOWN in header and "\u202e" in header
    # The long unbroken error line stays inside the page: no sideways scrolling.
    width = guarded.evaluate("document.documentElement.scrollWidth")
    assert width <= guarded.viewport_size["width"] + 1


def test_htmx_swaps_of_hostile_content_stay_inert(guarded, hostile_traces):
    """Expanding tree nodes, opening the step panel and switching tabs go through
    htmx swaps (allowScriptTags false): still nothing runs."""
    from traces.models import Run

    for run in Run.objects.filter(step_count__gt=0).order_by("-max_depth", "-steps_failed")[:2]:
        guarded.goto(run.get_absolute_url())
        toggles = guarded.locator("details.tree-node:not([open]) > summary .toggle")
        for index in range(min(toggles.count(), 4)):
            toggles.nth(index).click()
        guarded.wait_for_load_state("networkidle")
        link = guarded.locator(".tree-row .step-link").first
        link.click()
        guarded.locator("#step-panel.step-panel").wait_for()
        assert_inert(guarded, f"{run.get_absolute_url()} with the panel open")
        for name in ("Timeline", "Logs"):
            tab = guarded.locator("#run-tabs .tabs a", has_text=name)
            if tab.count():
                tab.first.click()
                guarded.wait_for_load_state("networkidle")
                assert_inert(guarded, f"{run.get_absolute_url()} {name} tab")


def test_escaping_alone_holds_without_the_csp(browser, live_server, hostile_traces):
    """The policy is the second line: with it switched off in the browser, a page
    that let markup through would run the payload. None does."""
    context = browser.new_context(base_url=live_server.url, bypass_csp=True)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        for url in pages_to_visit(tabs=("tree", "logs")):
            page.goto(url)
            page.wait_for_load_state("load")
            assert page.evaluate("window.__pwned") is None, f"a script from a trace ran on {url}"
        assert dialogs == []
    finally:
        context.close()
