"""duckflux's TXT encoding: `<id>.txt`, a header, then one block appended per
finished step, and an output section when the run ends (FORMATS.md §1).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..common import brief
from ..records import ParseError, RunRecord
from .model import RETRY_HINT, Locate, StepCollector, build_run, decode_text_value

_TXT_HEAD = b"# execution\nid: "
_TXT_HEADER_KEYS = ("id", "workflow", "startedAt", "status", "finishedAt", "duration")
_TXT_STEP_HEADER_RE = re.compile(r"## \[(\d+)\] (.*) \(([^()]*)\)")
# The single-line keys of a step block, after `startedAt`, in the order written.
_TXT_BLOCK_KEYS = ("finishedAt", "duration", "status", "loopIndex", "retries")
# `workflow: <name ?? id ?? "unnamed">[ (v<version>)]`. Versions are any YAML
# scalar ("1.2", 7, "beta", "rc-1"); the name may hold parentheses itself, so
# only a last group without spaces or parentheses is the version, and only when it
# looks like one: it has a digit or is a pre-release word, so "Report (verified)"
# stays a name.
_TXT_WORKFLOW_RE = re.compile(r"(.*) \(v([^()\s]+)\)", re.DOTALL)
_VERSION_WORD_RE = re.compile(
    r"(alpha|beta|rc|dev|pre|preview|nightly|snapshot|canary|next|latest|stable|edge|draft)"
    r"([-._+]\w*)*",
    re.IGNORECASE,
)


def _workflow_label(label: str) -> tuple[str, str | None]:
    """(name, version) of a TXT `workflow:` line."""
    match = _TXT_WORKFLOW_RE.fullmatch(label)
    if match and (re.search(r"\d", match[2]) or _VERSION_WORD_RE.fullmatch(match[2])):
        return match[1], match[2]
    return label, None


def sniff(head: bytes) -> bool:
    return head.startswith(_TXT_HEAD)


def parse(path: Path) -> Iterator[RunRecord]:
    yield _read_run(path)


def _read_run(path: Path) -> RunRecord:
    text = path.read_bytes().decode("utf-8", errors="replace")
    # Every write (header, step block, output section) ends with "\n".
    if not text.endswith("\n"):
        line = text.count("\n") + 1
        raise ParseError(f"line {line} is cut off ({RETRY_HINT})")
    # Dropping the file's last "\n" makes a value at the end of the file read
    # like one in the middle (each value is followed by "\n" and a key line).
    lines = text[:-1].split("\n")
    header, header_lines, inputs_text, steps_line = _txt_header(lines)
    starts = _txt_block_starts(lines, steps_line + 1)
    # Finalize appends the output section, then writes the final status: while
    # the header says running there is no section (after a crash between the
    # two, the section is read as part of the last step's output).
    finished = header.get("status") in ("success", "failure")
    output_line = _txt_output_line(lines, starts, steps_line) if finished else None
    # The output section ends the block before it; blocks whose write was late
    # follow it (FORMATS.md §1, "Finalize race").
    bounds = starts if output_line is None else sorted([*starts, output_line])
    # Blocks follow `# steps` directly: anything else there is a broken block.
    if (bounds[0] if bounds else len(lines)) > steps_line + 1:
        hint = "" if bounds else f" ({RETRY_HINT})"
        raise ParseError(f"line {steps_line + 2}: expected a step block '## [<seq>] ...'{hint}")
    end_of = dict(itertools.pairwise([*bounds, len(lines)]))
    collector = StepCollector()
    records = [
        collector.add(*_txt_step(lines, start, end_of[start], at_eof=end_of[start] == len(lines)))
        for start in starts
    ]
    extras: dict[str, Any] = {"workflowLabel": header.get("workflow", "")}
    output = None
    if output_line is not None:
        output = _txt_value("\n".join(lines[output_line + 1 : end_of[output_line]]))
    elif finished:
        # Finished without the section: the output is unknown, which null would hide.
        extras["output_missing"] = True
    execution = _txt_execution(header, header_lines, inputs_text, output)
    return build_run(
        path,
        "txt",
        execution,
        _line_locator(header_lines, 0),
        collector,
        records.__getitem__,
        extras,
    )


def _txt_header(lines: list[str]) -> tuple[dict[str, str], dict[str, int], str, int]:
    """(header values, their line indexes, the inputs text, the index of `# steps`)."""
    if lines[0] != "# execution":
        raise ParseError("line 1: expected '# execution'")
    values: dict[str, str] = {}
    line_of: dict[str, int] = {}
    index, last_key = 1, None
    while index < len(lines) and lines[index] != "":
        key, sep, value = lines[index].partition(": ")
        if sep and key in _TXT_HEADER_KEYS and key not in values:
            values[key], line_of[key], last_key = value, index, key
        elif last_key is not None:  # a workflow name with a line break
            values[last_key] += "\n" + lines[index]
        else:
            raise ParseError(f"line {index + 1}: expected 'id: <execution id>'")
        index += 1
    if "id" not in values:
        raise ParseError("line 2: expected 'id: <execution id>'")
    if index + 1 >= len(lines):
        raise ParseError(f"the header is cut off after line {index} ({RETRY_HINT})")
    if lines[index + 1] != "# inputs":
        raise ParseError(f"line {index + 2}: expected '# inputs'")
    # `# inputs`, the value (one line at least), a blank line, `# steps`.
    steps_line = next(
        (k for k in range(index + 4, len(lines)) if lines[k] == "# steps" and lines[k - 1] == ""),
        None,
    )
    if steps_line is None:
        raise ParseError(f"no '# steps' line after the inputs ({RETRY_HINT})")
    return values, line_of, "\n".join(lines[index + 2 : steps_line - 1]), steps_line


def _txt_block_starts(lines: list[str], start: int) -> list[int]:
    # A value can contain a line like `## [99] fake_step (exec)`; a real block
    # header is always followed by its `startedAt:` line. A value that holds a
    # whole block (a trace's text as an output) can repeat a real header: a seq is
    # written once, so its later header is value text, not a reason to lose the run.
    starts, seen = [], set()
    for i in range(start, len(lines) - 1):
        if not lines[i + 1].startswith("startedAt: "):
            continue
        header = _TXT_STEP_HEADER_RE.fullmatch(lines[i])
        if header and header[1] not in seen:
            seen.add(header[1])
            starts.append(i)
    return starts


def _txt_output_line(lines: list[str], starts: list[int], steps_line: int) -> int | None:
    """The index of the `# output` line of a finished file, None when it has none.

    Finalize appends the section after the blocks written so far, and blocks
    still being written land after it (FORMATS.md §1, "Finalize race"). Values
    can hold `# output` lines too. Without the race the section is after the
    last block, where the last such line is taken (a string output can hold
    one as well). A line before the last block is taken when no line after it
    can end that block, or when it ends a block whose output reads as JSON or
    `none`: the writer puts the section right after such an output, while a
    string is just as likely to hold the line as to be cut there.
    """
    candidates = [i for i in range(steps_line + 1, len(lines)) if lines[i] == "# output"]
    last_start = starts[-1] if starts else steps_line
    before = [i for i in candidates if i < last_start]
    if not before:
        return candidates[-1] if candidates else None
    options = [candidates[-1]] if candidates[-1] > last_start else []
    # Between two blocks only the first line can end the block's output as
    # JSON; else the last one is taken, as after the last block.
    by_block: dict[int, list[int]] = {}
    for index in before:
        by_block.setdefault(bisect.bisect(starts, index), []).append(index)
    for group in reversed(by_block.values()):
        options += [group[-1]] if len(group) == 1 else [group[-1], group[0]]
    scores = {index: _txt_output_score(lines, starts, steps_line, index) for index in options}
    best = max(options, key=scores.__getitem__)  # on a tie, the first option
    # Lines before the last block that cannot be the section are inside values.
    return None if scores[best] < 0 and best < last_start else best


def _txt_output_score(lines: list[str], starts: list[int], steps_line: int, index: int) -> int:
    """1 when an output section at `index` would end a block whose output reads
    as JSON or `none` (or follow `# steps`), 0 when it would cut a string, -1
    when the section cannot be there."""
    block = bisect.bisect(starts, index)
    end = starts[block] if block < len(starts) else len(lines)
    if end == index + 1:  # the section has at least one line of value
        return -1
    if block == 0:  # right after `# steps`: every block came late
        return 1 if index == steps_line + 1 else -1
    try:
        raw, _locate = _txt_step(lines, starts[block - 1], index, at_eof=False)
    except ParseError:
        return -1
    # An error is text: the section would cut it, wherever it stands.
    return int("error" not in raw and not isinstance(raw["output"], str))


def _txt_step(
    lines: list[str], start: int, end: int, *, at_eof: bool
) -> tuple[dict[str, Any], Locate]:
    """The model dict of the block in lines[start:end] and a locator for its fields."""
    header = _TXT_STEP_HEADER_RE.fullmatch(lines[start])
    assert header is not None  # _txt_block_starts only returns matching lines
    raw: dict[str, Any] = {"seq": int(header[1]), "name": header[2], "type": header[3]}
    line_of = {"seq": start, "name": start, "type": start}
    index = start + 1
    for key in ("startedAt", *_TXT_BLOCK_KEYS):
        if index < end and lines[index].startswith(key + ": "):
            raw[key], line_of[key] = lines[index][len(key) + 2 :], index
            index += 1
    incomplete = ParseError(
        f"line {start + 1}: step block [{raw['seq']}] is incomplete"
        + (f" ({RETRY_HINT})" if at_eof else "")
    )
    if "status" not in raw or index >= end or not lines[index].startswith("input: "):
        raise incomplete
    input_at = index
    split = _txt_split_block(lines, input_at, end, raw["status"])
    if split is None:
        raise incomplete
    output_at, error_at = split
    raw["input"] = _txt_value(_txt_text(lines, input_at, output_at))
    raw["output"] = _txt_value(_txt_text(lines, output_at, end if error_at is None else error_at))
    line_of.update(input=input_at, output=output_at)
    if error_at is not None:
        raw["error"], line_of["error"] = _txt_text(lines, error_at, end), error_at
    locate = _line_locator(line_of, start)
    _convert_txt_scalars(raw, locate)
    return raw, locate


def _txt_split_block(
    lines: list[str], input_at: int, end: int, status: str
) -> tuple[int, int | None] | None:
    """(the `output:` line, the `error:` line or None) of a block whose `input:`
    is at `input_at`; None when the block has no `output:` line.

    String values are written raw and can hold lines like `output: ` or
    `error: `. JSON text cannot, so after a JSON input the first `output: `
    line is the real one. After a string input (often the previous step's
    output: hostile lines travel down the chain) the real one is preferably
    the one followed by a JSON or `none` output, which failed and skipped
    steps always have. A string input and a string output stay ambiguous.
    """
    candidates = [i for i in range(input_at + 1, end) if lines[i].startswith("output: ")]
    if not candidates:
        return None

    def error_line(output_at: int) -> int | None:
        # Only failed and skipped steps have an error: in a success's output an
        # `error: ` line is just output.
        if status == "success":
            return None
        return _first_line(lines, "error: ", output_at + 1, end)

    def output_is_json(output_at: int) -> bool:
        error_at = error_line(output_at)
        return _is_json_or_none(_txt_text(lines, output_at, end if error_at is None else error_at))

    chosen = candidates[0]
    if not _is_json_or_none(_txt_text(lines, input_at, chosen)):
        chosen = next((c for c in candidates if output_is_json(c)), chosen)
    return chosen, error_line(chosen)


def _convert_txt_scalars(raw: dict[str, Any], locate: Locate) -> None:
    if "duration" in raw:
        raw["duration"] = _txt_number(raw["duration"], locate("duration"))
    for key in ("loopIndex", "retries"):
        if key in raw:
            try:
                raw[key] = int(raw[key])
            except ValueError:
                raise ParseError(
                    f"{locate(key)}: expected an integer, got {brief(raw[key])}"
                ) from None


def _txt_execution(
    header: dict[str, str], header_lines: dict[str, int], inputs_text: str, output: Any
) -> dict[str, Any]:
    locate = _line_locator(header_lines, 0)
    name, version = _workflow_label(header.get("workflow", ""))
    execution: dict[str, Any] = {
        "id": header["id"],
        "workflowName": name,
        "startedAt": header.get("startedAt"),
        "finishedAt": header.get("finishedAt"),
        "duration": None,
        "status": header.get("status"),
        "inputs": _txt_value(inputs_text),
        "output": output,
    }
    if version is not None:
        execution["workflowVersion"] = version
    if "duration" in header:
        execution["duration"] = _txt_number(header["duration"], locate("duration"))
    return execution


def _first_line(lines: list[str], prefix: str, start: int, end: int) -> int | None:
    return next((i for i in range(start, end) if lines[i].startswith(prefix)), None)


def _txt_text(lines: list[str], start: int, end: int) -> str:
    """The value of the `key: value` line at `start`, running up to line `end`."""
    first = lines[start].partition(": ")[2]
    return "\n".join([first, *lines[start + 1 : end]])


def _txt_value(text: str) -> Any:
    # Strings are written raw, everything else as JSON, null as `none`.
    return None if text == "none" else decode_text_value(text)


def _txt_number(text: str, where: str) -> int | float:
    body = text.removesuffix("ms")
    try:
        return int(body)
    except ValueError:
        pass
    try:
        value = float(body)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ParseError(f"{where}: expected a duration in ms, got {brief(text)}")
    return value


def _is_json_or_none(text: str) -> bool:
    if text == "none":
        return True
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _line_locator(line_of: dict[str, int], default: int) -> Locate:
    return lambda field: f"line {line_of.get(field, default) + 1} ({field or 'header'})"
