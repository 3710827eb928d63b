"""duckflux TXT files (`traces/ingest/duckflux/txt_file.py`): hostile values, half-written
files and the finalize race."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.duckflux_files import (
    MANIFEST,
    at,
    load_json,
    lose_the_race,
    parents,
    parse_one,
    run_fields,
    step,
    step_view,
    trace,
    txt_trace,
    write_json,
)
from traces.ingest import duckflux
from traces.ingest.common import read_head
from traces.ingest.records import ParseError, RunRecord, Status

# --------------------------------------------------------------------------- TXT


HOSTILE = (
    "line one\n"
    "## [99] fake_step (exec)\n"
    "status: running\n"
    "# output\n"
    "# steps\n"
    "error: not an error, this step succeeded\n"
    "output: still the same value\n"
)


BOOM = "boom\nerror: second line\n## [98] nope (exec)"


def hostile_document(output: Any = "final\n") -> dict[str, Any]:
    return trace(
        [
            step(1, "exec", 1, 2, name="first", input={"n": 1}, output=HOSTILE),
            step(2, "exec", 2, 3, name="second", input=HOSTILE, status="failure", error=BOOM),
            step(3, "exec", 3, 4, name="third", input=HOSTILE, output={"ok": True}),
            step(4, "exec", 4, 5, name="fourth", input=None, output="tail\n# output\n"),
        ],
        inputs={"who": "## [97] x (exec)\nstatus: running"},
        output=output,
        status="failure",
    )


def test_hostile_txt_values(tmp_path):
    document = hostile_document()
    path = tmp_path / "hostile.txt"
    path.write_text(txt_trace(document))
    # Only the header's `status: running` line is rewritten at the end.
    assert path.read_text().count("\nstatus: running\n") == 3
    assert "\nstatus: failure\nfinishedAt: " in path.read_text()
    assert duckflux.sniff(path, read_head(path))

    run = parse_one(path)
    assert (run.status, run.raw_status) == (Status.FAILED, "failure")
    assert run.input == {"who": "## [97] x (exec)\nstatus: running"}
    assert run.output == "final\n"
    assert [s.name for s in run.steps] == ["first", "second", "third", "fourth"]
    first, second, third, fourth = run.steps
    assert (first.input, first.output, first.error) == ({"n": 1}, HOSTILE, "")
    assert (second.input, second.output, second.error) == (HOSTILE, None, BOOM)
    assert (third.input, third.output, third.error) == (HOSTILE, {"ok": True}, "")
    assert (fourth.input, fourth.output) == (None, "tail\n# output\n")


def test_txt_json_output_after_a_hostile_step(tmp_path):
    document = trace([step(1, "exec", 1, 2, output="# output\n{}\n")], output={"done": True})
    path = tmp_path / "x.txt"
    path.write_text(txt_trace(document))
    run = parse_one(path)
    assert run.steps[0].output == "# output\n{}\n"
    assert run.output == {"done": True}


def test_txt_strings_stay_text(tmp_path):
    document = trace(
        [
            step(1, "exec", 1, 2, input='"quoted"', output="pending\n"),
            step(2, "exec", 2, 3, input=14000, output=[1, "two"]),
        ]
    )
    path = tmp_path / "x.txt"
    path.write_text(txt_trace(document))
    one, two = parse_one(path).steps
    assert (one.input, one.output) == ('"quoted"', "pending\n")
    assert (two.input, two.output) == (14000, [1, "two"])


@pytest.mark.parametrize(
    ("cut_after", "message"),
    [
        ("workflow: ", r"^line 3 is cut off"),
        ("startedAt: 2026-11-21T19:19:23.083Z\n", r"^the header is cut off after line 4"),
        ("## [2] step_two (exec)\nstartedAt: 2026-11-21T19:19:23.092Z\n", r"step block \[2\]"),
        ("## [2] step_t", r"^line 21 is cut off"),
    ],
)
def test_half_written_txt(samples, tmp_path, cut_after, message):
    text = (
        samples / "duckflux" / "running-snapshot/7f69de2a-ea5a-4a81-9e10-60a3209d2e61.txt"
    ).read_text()
    path = tmp_path / "cut.txt"
    path.write_text(text[: text.index(cut_after) + len(cut_after)])
    with pytest.raises(ParseError, match=message) as caught:
        parse_one(path)
    assert duckflux.RETRY_HINT in str(caught.value)


# --------------------------------------------------------------------------- TXT: finalize race


TXT_FILES = [e["file"] for e in MANIFEST if e["file"].startswith("txt/")]
FINISHED_JSON_FILES = [
    e["file"] for e in MANIFEST if e["format"] == "json" and e["status_in_file"] != "running"
]


def without_source_time(run: RunRecord) -> dict[str, Any]:
    return {k: v for k, v in run_fields(run).items() if k != "source_updated_at"}


@pytest.mark.parametrize("late", [1, 2, 3, "all"])
@pytest.mark.parametrize("name", TXT_FILES)
def test_txt_blocks_after_the_output_section_read_like_the_original(samples, tmp_path, name, late):
    # 03's last blocks are poll_status [21] and the `until` loop [18] that holds
    # it; 04's are the parallel [2] and merge [7]: containers closing last.
    source = samples / "duckflux" / name
    original = parse_one(source)
    text = source.read_text()
    late_blocks = len(original.steps) if late == "all" else late
    raced = lose_the_race(text, late_blocks)
    # The same lines, some moved.
    assert raced != text and sorted(raced.split("\n")) == sorted(text.split("\n"))
    path = tmp_path / source.name
    path.write_text(raced)

    run = parse_one(path)
    # Same status, output, steps, nesting (parent_key) and completion order.
    assert without_source_time(run) == without_source_time(original)
    assert run.steps == original.steps
    assert "output_missing" not in run.attributes


@pytest.mark.parametrize("late", [1, 2, 3, "all"])
@pytest.mark.parametrize("name", FINISHED_JSON_FILES)
def test_txt_with_late_blocks_parses_like_the_json(samples, tmp_path, name, late):
    source = samples / "duckflux" / name
    document = load_json(source)
    expected = parse_one(source)
    path = tmp_path / f"{source.stem}.txt"
    path.write_text(txt_trace(document, late=len(document["steps"]) if late == "all" else late))
    assert path.read_text().index("\n# output\n") < path.read_text().rindex("\n## [")

    run = parse_one(path)
    assert [step_view(s) for s in run.steps] == [step_view(s) for s in expected.steps]
    assert parents(run) == parents(expected)
    assert (run.status, run.raw_status, run.finished_at, run.input, run.output) == (
        expected.status,
        expected.raw_status,
        expected.finished_at,
        expected.input,
        expected.output,
    )
    assert run.completeness == expected.completeness


def test_txt_race_example_from_the_format_notes(tmp_path):
    path = tmp_path / "race.txt"
    path.write_text(
        "# execution\n"
        "id: 5b1f0c3e-0000-4000-8000-000000000002\n"
        "workflow: Deliver report (v3)\n"
        "startedAt: 2026-11-21T19:19:50.012Z\n"
        "status: failure\n"
        "finishedAt: 2026-11-21T19:19:51.130Z\n"
        "duration: 1118.25ms\n"
        "\n"
        "# inputs\n"
        "{}\n"
        "\n"
        "# steps\n"
        "## [1] fetch (http)\n"
        "startedAt: 2026-11-21T19:19:50.014Z\n"
        "finishedAt: 2026-11-21T19:19:51.090Z\n"
        "duration: 1076ms\n"
        "status: failure\n"
        "input: none\n"
        "output: none\n"
        "error: HTTP 502 from upstream\n"
        "# output\n"
        "none\n"
        "## [2] deliver (exec)\n"
        "startedAt: 2026-11-21T19:19:51.091Z\n"
        "finishedAt: 2026-11-21T19:19:51.120Z\n"
        "duration: 29ms\n"
        "status: success\n"
        "input: none\n"
        "output: delivered\n"
        "\n"
    )
    run = parse_one(path)
    assert (run.status, run.output, run.completeness) == (Status.FAILED, None, (1, 2))
    assert "output_missing" not in run.attributes
    fetch, deliver = run.steps
    assert (fetch.name, fetch.status, fetch.output) == ("fetch", Status.FAILED, None)
    assert fetch.error == "HTTP 502 from upstream"
    assert (deliver.name, deliver.status, deliver.output) == (
        "deliver",
        Status.SUCCEEDED,
        "delivered\n",
    )
    assert [s.attributes["completion_index"] for s in run.steps] == [0, 1]


@pytest.mark.parametrize("late", [0, 2])
def test_finished_txt_without_its_output_section(samples, tmp_path, late):
    source = samples / "duckflux" / "txt/07d54e79-4831-417b-90b6-b439565fe9bd.txt"
    original = parse_one(source)
    text = lose_the_race(source.read_text(), late) if late else source.read_text()
    path = tmp_path / "no-output.txt"
    path.write_text(re.sub(r"(?m)^# output\nmerged\n\n", "", text))
    assert "# output" not in path.read_text()

    run = parse_one(path)
    # Finished all the same; its output is unknown, not null.
    assert (run.status, run.finished_at) == (Status.SUCCEEDED, original.finished_at)
    assert (run.output, run.attributes["output_missing"]) == (None, True)
    assert run.steps == original.steps
    assert run.completeness == (1, 7)


@pytest.mark.parametrize("status", ["success", "running"])
def test_txt_without_steps(tmp_path, status):
    document = trace([], status=status, finishedAt="" if status == "running" else at(5))
    path = tmp_path / "empty-steps.txt"
    path.write_text(re.sub(r"(?s)# output\n.*", "", txt_trace(document)))
    run = parse_one(path)
    assert (run.raw_status, run.steps, run.output) == (status, [], None)
    assert run.attributes.get("output_missing") == (True if status == "success" else None)


def test_running_txt_has_no_output_section(tmp_path):
    # Look-alike lines in a value of a running file stay in the value.
    lookalike = "report\n# output\nnone\n## [9] fake_step (exec)\n"
    document = trace(
        [
            step(1, "exec", 1, 2, name="first", output=lookalike),
            step(2, "exec", 3, 4, name="second", input=lookalike, output={"n": 2}),
        ],
        status="running",
        finishedAt="",
        duration=0,
    )
    path = tmp_path / "running.txt"
    path.write_text(txt_trace(document))
    run = parse_one(path)
    assert (run.status, run.raw_status, run.finished_at) == (Status.RUNNING, "running", None)
    assert (run.output, run.duration_ms, run.completeness) == (None, None, (0, 2))
    assert "output_missing" not in run.attributes
    first, second = run.steps
    assert (first.output, second.input, second.output) == (lookalike, lookalike, {"n": 2})


@pytest.mark.parametrize(
    ("late", "output"),
    [(1, "final\n"), (1, {"done": True}), (4, None), (4, "final\n")],
)
def test_hostile_txt_values_with_late_blocks(tmp_path, late, output):
    # The section after step 3's JSON output (late=1) or right after `# steps`
    # (late=4) is certain. After step 1 or 2 (whose output and error are text)
    # it is not: step 4's `# output` line is read as the section, as without
    # the race.
    document = hostile_document(output)
    expected = parse_one(write_json(tmp_path / "hostile.json", document))
    path = tmp_path / "hostile.txt"
    path.write_text(txt_trace(document, late=late))
    run = parse_one(path)
    assert run.output == output
    assert [step_view(s) for s in run.steps] == [step_view(s) for s in expected.steps]


def test_output_line_and_json_in_an_earlier_step_output(tmp_path):
    # Without the race, a `# output` line before the last block is in a value,
    # even when JSON follows it.
    document = trace(
        [
            step(1, "exec", 1, 2, name="log", output="x\n# output\n{}\n"),
            step(2, "exec", 2, 3, name="last", output="plain\n"),
        ],
        output="done\n",
    )
    path = tmp_path / "x.txt"
    path.write_text(txt_trace(document))
    run = parse_one(path)
    assert run.output == "done\n"
    assert [s.output for s in run.steps] == ["x\n# output\n{}\n", "plain\n"]


def test_late_block_whose_input_holds_an_output_line(tmp_path):
    # A step printed a markdown heading; the chain hands it to the next step,
    # whose block came late: the `# output` line in its input is not the section.
    report = "report\n# output\nbody\n"
    document = trace(
        [
            step(1, "exec", 1, 2, name="render", output=report),
            step(2, "exec", 2, 3, name="publish", input=report, output={"ok": True}),
        ],
        output={"ok": True},
    )
    path = tmp_path / "late.txt"
    path.write_text(txt_trace(document, late=1))
    run = parse_one(path)
    assert run.output == {"ok": True}
    render, publish = run.steps
    assert (render.output, publish.input, publish.output) == (report, report, {"ok": True})


def test_txt_bad_scalar_names_its_line(samples, tmp_path):
    text = (samples / "duckflux" / "txt/07d54e79-4831-417b-90b6-b439565fe9bd.txt").read_text()
    path = tmp_path / "bad.txt"
    path.write_text(text.replace("duration: 5ms", "duration: fast", 1))
    with pytest.raises(ParseError, match=r"^line 16 \(duration\): expected a duration in ms"):
        parse_one(path)


def test_a_value_that_repeats_a_whole_block_is_value_text(tmp_path):
    """A step whose output is a trace's text repeats a real header (`## [1] ...` then
    `startedAt:`): a seq is written once, so the repeat is read as the value."""
    inner = txt_trace(trace([step(1, "exec", 1, 2, name="fetch")]))
    document = trace(
        [step(1, "exec", 1, 2, name="fetch"), step(2, "exec", 3, 4, name="dump", output=inner)]
    )
    path = tmp_path / "repeat.txt"
    path.write_text(txt_trace(document))
    run = parse_one(path)
    assert [(s.name, s.status) for s in run.steps] == [
        ("fetch", "succeeded"),
        ("dump", "succeeded"),
    ]
    assert "## [1] fetch (exec)" in run.steps[1].output
