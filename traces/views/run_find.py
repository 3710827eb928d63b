"""Find in run (the run page's find bar, `?find=`): the tree shows a window of the
matches under their ancestors, the other steps hidden; the timeline highlights the
matches of its window, or shows only them (`only=1`).

The matches come from queries.find (a full-text index, a keyset window, one
recursive query for the ancestors), so a find in a run of 100,000 steps makes the
same few queries as in a run of ten, and shows a match however deep it is.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.urls import reverse

from traces import queries
from traces.models import Run, Step
from traces.queries.find import FIND_WINDOW, Find

from . import (
    run_tabs,  # (which imports this module: names are read at call time)
    tree_groups,
)


def find_keep(form) -> dict:
    """The find's parameters, for the links that keep it (tabs, pills, windows)."""
    options = form.cleaned_data
    keep = {"find": options.get("find") or ""}
    if options.get("only") == "1":
        keep["only"] = "1"
    return {name: value for name, value in keep.items() if value}


def find_bar(run: Run, form, tab: str) -> dict:
    """The find bar above the tree and the timeline, with the matches' count."""
    find: Find = form.found
    options = form.cleaned_data
    bar = {
        "text": options.get("find") or "",
        "tab": tab,
        "action": reverse("traces:run-detail", args=[run.pk]),
        "matches_only": options.get("only") == "1" and bool(find),
        "active": bool(find),
        "count": 0,
        "capped": False,
    }
    if find:
        bar["count"], bar["capped"] = queries.find.count(run, find, failed_only=form.failed_only)
        keep = {"tab": tab, **({"failed": "1"} if form.failed_only else {})}
        action, text = bar["action"], bar["text"]
        bar["clear_url"] = f"{action}?{urlencode(keep)}"
        bar["only_url"] = f"{action}?{urlencode({**keep, 'find': text, 'only': '1'})}"
        bar["all_url"] = f"{action}?{urlencode({**keep, 'find': text})}"
    return bar


# --- the tree -------------------------------------------------------------------------------


def find_tree(run: Run, form, bar: dict) -> dict:
    """A window of the matches (in run order) with their ancestors, as tree levels:
    each ancestor open on the way down to its matches, the other steps left out."""
    options = form.cleaned_data
    find = form.found
    page = queries.find.window(
        run,
        find,
        counted=(bar["count"], bar["capped"]),
        failed_only=form.failed_only,
        after=options["after"] or None,
        before=options["before"] or None,
    )
    matches = page.items
    ancestors = queries.find.ancestors_of(matches)
    by_id: dict[int, Step] = {step.pk: step for step in ancestors}
    by_id.update((step.pk, step) for step in matches)
    rows = sorted(by_id.values(), key=lambda step: (step.seq, step.pk))
    run_tabs.mark_tree_rows(run.pk, rows, [], form.failed_only)
    matched = {step.pk for step in matches}
    keep = urlencode(find_keep(form))
    children: dict[int | None, list[Step]] = {}
    for step in rows:
        step.find_class = " find-match" if step.pk in matched else " find-context"
        step.url = f"{step.url}?{keep}" if step.url else ""
        parent = step.parent_id if step.parent_id in by_id else None
        children.setdefault(parent, []).append(step)
    for step in rows:
        shown = children.get(step.pk)
        if shown:
            step.children_level = _level(step, shown)
    roots = _level(None, children.get(None, []))
    # What tells repeated siblings apart, and containers' summaries, as the tree shows them.
    tree_groups.decorate_levels(
        run.pk, [roots, *(step.children_level for step in rows if shown_under(step))]
    )
    first = options.get("find_at") or 0
    return {
        "roots": roots,
        "matches": matches,
        "first": first + 1 if matches else 0,
        "last": first + len(matches),
        **_window_urls(run, form, page, first, len(matches)),
    }


def shown_under(step: Step) -> bool:
    return step.children_level is not None


def _level(parent: Step | None, rows: list[Step]) -> run_tabs.TreeLevel:
    rows.sort(key=lambda step: (step.position, step.pk))
    level = run_tabs.TreeLevel(
        parent=parent,
        rows=rows,
        parallel=bool(parent and parent.type.lower() == "parallel"),
        # Its loop's iterations headed, as in the whole tree: the shown ones only.
        grouped=run_tabs._mark_iterations(rows, parent, None),
    )
    if parent is not None and parent.child_count > len(rows) and parent.children_url:
        level.all_url = parent.children_url
        level.all_count = parent.child_count
    return level


def _window_urls(run: Run, form, page, first: int, shown: int) -> dict:
    base = reverse("traces:run-detail", args=[run.pk])
    keep = {"tab": "tree", **find_keep(form)}
    if form.failed_only:
        keep["failed"] = "1"
    urls = {"next_url": "", "prev_url": ""}
    if page.next_cursor:
        query = {**keep, "after": page.next_cursor, "find_at": first + shown}
        urls["next_url"] = f"{base}?{urlencode(query)}"
    if page.prev_cursor:
        query = {**keep, "before": page.prev_cursor, "find_at": max(first - FIND_WINDOW, 0)}
        urls["prev_url"] = f"{base}?{urlencode(query)}"
    return urls


# --- the timeline ---------------------------------------------------------------------------


def mark_timeline(
    run: Run, rows: list[Step], form, *, rows_are_matches: bool = True
) -> dict | None:
    """The matches among a timeline window's rows get a highlight, the others are
    dimmed; None without a find. `rows_are_matches`: with "only the matches" the
    window was read from the matches alone (run order); a time window was not."""
    find = form.found
    if not find:
        return None
    if rows_are_matches and form.cleaned_data.get("only") == "1":
        matched = {step.pk for step in rows}  # the window holds only matches
    else:
        matched = queries.find.ids_among(run, find, [step.pk for step in rows])
    for step in rows:
        step.find_class = " find-match" if step.pk in matched else " find-other"
    return {"in_window": len(matched)}
