"""Repeated steps in a real browser: a loop container's row summarises its
iterations, and its "slowest" link opens that iteration's first step in the panel,
with the loop expanded around it on a reload."""

import os

from traces.models import Run, StepGroup

SHOTS = os.environ.get("TRACER_SHOTS", "")


def _shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


def test_a_loop_row_summarises_its_iterations_and_links_the_slowest(page, loaded_samples):
    loop = StepGroup.objects.filter(kind="loop", run__format="duckflux", count=5).first()
    run = Run.objects.get(pk=loop.run_id)
    page.goto(run.get_absolute_url())
    row = page.locator(f"#node-{loop.parent_id} > details > summary")
    line = row.locator('.group-summary[data-group="loop"]')
    line.wait_for()
    text = line.text_content()
    assert "↻ 5 iterations" in text and "p50" in text and "p95" in text and "max" in text
    assert line.locator("svg.group-hist rect").count() >= 2
    # The loop is still closed: the summary does not load its steps.
    assert page.locator(f"#kids-{loop.parent_id} .tree-item").count() == 0
    _shot(page, "loop-row")

    line.locator("a.slowest").click()
    panel = page.locator("#step-panel.step-panel")
    panel.wait_for()
    assert page.url.endswith(loop.slowest.get_absolute_url())
    assert loop.slowest.name in panel.text_content()

    # The panel's URL opened afresh: the loop is expanded down to the slowest step.
    page.goto(loop.slowest.get_absolute_url())
    page.locator(f"#node-{loop.slowest_id} .tree-row.selected").wait_for()
    _shot(page, "loop-slowest")


def test_repeated_batches_show_their_offsets(page, loaded_samples):
    group = StepGroup.objects.filter(name="upsert_batch", count=4).first()
    run = Run.objects.get(pk=group.run_id)
    page.goto(run.get_absolute_url())
    parent = page.locator(f"#node-{group.parent_id}")
    summary = parent.locator("> details > summary .group-summary")
    assert "4 × upsert_batch" in summary.text_content()  # noqa: RUF001
    parent.locator("> details > summary .toggle").click()
    offsets = parent.locator(".tree-children .differs")
    offsets.first.wait_for()
    assert offsets.count() == 4
    assert offsets.first.text_content() == "offset=0"
    _shot(page, "batches")


def test_the_timeline_tells_repeated_batches_apart_as_the_tree_does(page, loaded_samples):
    group = StepGroup.objects.filter(name="upsert_batch").order_by("-count").first()
    run = Run.objects.get(pk=group.run_id)
    page.goto(f"{run.get_absolute_url()}?tab=timeline")
    rows = page.locator("li.timeline-row", has=page.locator(".t-sib .differs"))
    rows.first.wait_for()
    offsets = rows.locator(".t-sib .differs").all_text_contents()
    assert offsets == [f"offset={50 * i}" for i in range(group.count)]
    # Readable beside the name, not cut off by the label's ellipsis; the whole in its title.
    first = rows.first
    label, differs = first.locator(".t-label"), first.locator(".t-sib .differs")
    box, inside = label.bounding_box(), differs.bounding_box()
    assert inside["x"] + inside["width"] <= box["x"] + box["width"] + 1
    assert "upsert_batch · offset=0" in label.get_attribute("title")
    _shot(page, "timeline-batches")

    # Zoomed in to the first half, the rows still say which batch each is.
    page.get_by_role("link", name="+ zoom in").click()
    page.wait_for_url("**from_ms=**")
    page.wait_for_function("() => !document.querySelector('.htmx-request')")
    shown = page.locator("li.timeline-row .t-sib .differs").all_text_contents()
    assert shown and set(shown) <= set(offsets)
