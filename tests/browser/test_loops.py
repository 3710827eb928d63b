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
