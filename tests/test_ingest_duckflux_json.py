"""duckflux JSON files (`traces/ingest/duckflux/json_file.py`): broken, wrongly shaped,
streamed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.duckflux_files import (
    JSON_FILES,
    load_json,
    parents,
    parse_one,
    run_fields,
    step,
    trace,
    write_json,
)
from traces.ingest import duckflux
from traces.ingest.common import read_head
from traces.ingest.duckflux import json_file
from traces.ingest.records import ParseError, RunRecord

# --------------------------------------------------------------------------- JSON errors


def test_truncated_json_at_every_offset(samples, tmp_path):
    data = (samples / "duckflux" / "json/6b45129b-7616-488c-8763-e80b2b87d7a4.json").read_bytes()
    path = tmp_path / "cut.json"
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(ParseError, match=r"^truncated JSON at line \d+, column \d+") as caught:
            parse_one(path)
        assert duckflux.RETRY_HINT in str(caught.value)


def test_truncated_json_reports_the_line(samples, tmp_path):
    data = (samples / "duckflux" / "json/b2c0c4d4-ed5c-4e88-83ca-a371f130295a.json").read_bytes()
    cut = data.index(b'"name": "maybe_flag"')
    path = tmp_path / "cut.json"
    path.write_bytes(data[:cut])
    line = data[:cut].count(b"\n") + 1
    with pytest.raises(ParseError, match=rf"^truncated JSON at line {line}, "):
        parse_one(path)


def test_json_cut_inside_a_multibyte_character(tmp_path):
    data = json.dumps(trace([step(1, "exec", 1, 2, output="café")]), ensure_ascii=False).encode()
    cut = data.index("é".encode()) + 1
    path = tmp_path / "cut.json"
    path.write_bytes(data[:cut])
    with pytest.raises(ParseError, match=r"^truncated JSON at line 1 .*inside a character"):
        parse_one(path)


@pytest.mark.parametrize("cut", [1, 100, 1000, -1])
def test_truncated_json_on_the_streaming_path(samples, tmp_path, monkeypatch, cut):
    monkeypatch.setattr(json_file, "STREAM_THRESHOLD_BYTES", 0)
    data = (samples / "duckflux" / "json/b2c0c4d4-ed5c-4e88-83ca-a371f130295a.json").read_bytes()
    path = tmp_path / "cut.json"
    path.write_bytes(data[:cut])
    with pytest.raises(ParseError, match=r"^truncated JSON at line \d+ \(byte \d+\)") as caught:
        parse_one(path)
    assert duckflux.RETRY_HINT in str(caught.value)


def test_invalid_json_in_the_middle(samples, tmp_path):
    data = (samples / "duckflux" / "json/6b45129b-7616-488c-8763-e80b2b87d7a4.json").read_bytes()
    path = tmp_path / "bad.json"
    broken = data.replace(b'"status": "success"', b'"status": success', 1)
    path.write_bytes(broken)
    line = broken[: broken.index(b'"status": success')].count(b"\n") + 1
    with pytest.raises(ParseError, match=rf"^invalid JSON at line {line}, column 15"):
        parse_one(path)


@pytest.mark.parametrize("suffix", ["json", "txt", "sqlite"])
@pytest.mark.parametrize("content", [b"", b" \n\n"])
def test_empty_file(tmp_path, suffix, content):
    path = tmp_path / f"empty.{suffix}"
    path.write_bytes(content)
    with pytest.raises(ParseError, match=r"^empty file \(the file may still be being written"):
        parse_one(path)


def test_binary_garbage(tmp_path):
    path = tmp_path / "garbage.json"
    path.write_bytes(bytes(range(256)) * 4)
    assert duckflux.sniff(path, read_head(path)) is False
    with pytest.raises(ParseError, match="not a duckflux trace"):
        parse_one(path)


def _set(path: str, value: Any):
    """A change of the sample document: `path` like "steps.3.seq"; `...` deletes."""

    def change(document):
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key = int(last) if isinstance(target, list) else last
        if value is ...:
            del target[key]
        else:
            target[key] = value
        return document

    return change


WRONG_SHAPES = [
    (lambda d: [d], "top level: expected an object, got a list"),
    (_set("execution", ...), "not a duckflux trace: no 'execution' key"),
    (_set("steps", ...), "steps: missing"),
    (_set("steps", {"0": {}}), "steps: expected a list, got an object"),
    (_set("execution", [1]), "execution: expected an object, got a list"),
    (_set("execution.id", ...), "execution.id: missing"),
    (_set("execution.status", "done"), "execution.status: unknown status 'done'"),
    (_set("execution.startedAt", "noon"), "execution.startedAt: 'noon' is not a timestamp"),
    (_set("execution.duration", "1s"), 'execution.duration: expected a number, got "1s"'),
    (_set("steps.0", 5), "steps[0]: expected an object, got 5"),
    (_set("steps.1.seq", ...), "steps[1].seq: missing"),
    (_set("steps.3.seq", "x"), 'steps[3].seq: expected an integer, got "x"'),
    (_set("steps.3.seq", 1), "steps[3].seq: seq 1 appears twice"),
    (_set("steps.2.startedAt", "yesterday"), "steps[2].startedAt: 'yesterday' is not a timestamp"),
    (_set("steps.2.finishedAt", 1e30), "steps[2].finishedAt: timestamp 1e+30 is out of range"),
    (_set("steps.0.status", "exploded"), "steps[0].status: unknown status 'exploded'"),
    (_set("steps.0.status", ...), "steps[0].status: missing"),
    (_set("steps.0.loopIndex", 1.5), "steps[0].loopIndex: expected an integer, got 1.5"),
    (_set("steps.0.retries", True), "steps[0].retries: expected an integer, got true"),
    (_set("steps.0.name", ["a"]), "steps[0].name: expected a string, got a list"),
]


@pytest.mark.parametrize("streaming", [False, True], ids=["in-memory", "streaming"])
@pytest.mark.parametrize(("change", "message"), WRONG_SHAPES, ids=[m for _c, m in WRONG_SHAPES])
def test_wrong_shapes(samples, tmp_path, monkeypatch, streaming, change, message):
    if streaming:
        monkeypatch.setattr(json_file, "STREAM_THRESHOLD_BYTES", 0)
    source = samples / "duckflux" / "json/6b45129b-7616-488c-8763-e80b2b87d7a4.json"
    path = write_json(tmp_path / "shape.json", change(load_json(source)))
    with pytest.raises(ParseError) as caught:
        parse_one(path)
    assert str(caught.value).startswith(message)


# --------------------------------------------------------------------------- streaming


def _parse_both_ways(path: Path, monkeypatch) -> tuple[RunRecord, RunRecord]:
    in_memory = parse_one(path)
    streamed_calls = []
    scan = json_file._scan_json_stream
    monkeypatch.setattr(json_file, "STREAM_THRESHOLD_BYTES", 0)
    monkeypatch.setattr(
        json_file, "_scan_json_stream", lambda *a: streamed_calls.append(1) or scan(*a)
    )
    streamed = parse_one(path)
    assert streamed_calls == [1]
    return in_memory, streamed


@pytest.mark.parametrize("name", JSON_FILES)
def test_streaming_gives_the_same_records(samples, monkeypatch, name):
    in_memory, streamed = _parse_both_ways(samples / "duckflux" / name, monkeypatch)
    assert run_fields(streamed) == run_fields(in_memory)
    assert streamed.steps == in_memory.steps


def test_streaming_a_bigger_generated_run(tmp_path, monkeypatch):
    # 200 iterations of a loop holding an `if` and a step with a 20 kB output.
    steps, seq, clock = [], 2, 1
    for index in range(200):
        body = step(seq + 1, "exec", clock, clock + 2, loopIndex=index, output="x" * 20_000)
        condition = step(seq, "if", clock, clock + 2, loopIndex=index, input={"condition": "c"})
        steps += [body, condition]
        seq, clock = seq + 2, clock + 3
    steps.append(step(1, "loop", 0, clock, name="pages"))
    document = trace(steps, extra_field={"kept": True})
    document["writer"] = "test"
    path = write_json(tmp_path / "big.json", document)

    in_memory, streamed = _parse_both_ways(path, monkeypatch)
    assert run_fields(streamed) == run_fields(in_memory)
    assert streamed.steps == in_memory.steps
    assert len(streamed.steps) == 401
    tree = parents(streamed)
    assert tree[1] is None
    assert all(tree[s] == 1 for s in range(2, 402, 2))  # the ifs
    assert all(tree[s] == s - 1 for s in range(3, 403, 2))  # each body in its if
    assert streamed.attributes["extra_field"] == {"kept": True}
    assert streamed.attributes["top_level"] == {"writer": "test"}
