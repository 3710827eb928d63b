import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from traces.ingest import greentic
from traces.ingest.common import read_head
from traces.ingest.records import ParseError, Status

SAMPLES = {
    "01-success-always": (5, Status.SUCCEEDED, None),
    "02-node-error": (3, Status.FAILED, "node_error"),
    "03-flow-error-unknown": (4, Status.FAILED, "flow_error"),
    "04-validation-capture-inputs": (5, Status.SUCCEEDED, None),
}


def parse_one(path: Path):
    (run,) = list(greentic.parse(path))
    run.steps = list(run.steps)
    run.logs = list(run.logs)
    return run


def sample(samples: Path, name: str) -> Path:
    return samples / "greentic" / name / "trace.json"


def write_trace(tmp_path: Path, envelope: dict, name: str = "trace.json") -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(envelope, option=orjson.OPT_INDENT_2))
    return path


def a_step(index: int, **changes) -> dict:
    step = {
        "node_id": f"n{index}",
        "component_id": "component.exec",
        "operation": "process",
        "input_hash": {"algorithm": "blake3", "value": "0" * 64},
        "output_hash": {"algorithm": "blake3", "value": "1" * 64},
        "duration_ms": index,
    }
    step.update(changes)
    return step


def an_envelope(steps: list) -> dict:
    return {
        "trace_version": 1,
        "pack": {"pack_ref": "demo"},
        "flow": {"id": "demo.main", "version": "1.0.0"},
        "steps": steps,
    }


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_counts_and_statuses(samples, name):
    count, status, code = SAMPLES[name]
    run = parse_one(sample(samples, name))
    assert run.format == "greentic"
    assert len(run.steps) == count
    assert run.status == status
    assert not run.truncated
    assert [step.key for step in run.steps] == [str(i) for i in range(count)]
    failed = [step for step in run.steps if step.status == Status.FAILED]
    if code is None:
        assert failed == []
        assert run.error == ""
    else:
        assert failed == [run.steps[-1]]
        assert failed[0].attributes["error_code"] == code
        assert failed[0].attributes["error_details"] is None
        assert run.error.startswith(f"{code}: ")
        assert failed[0].error and failed[0].error in run.error
    assert all(step.started_at is None and step.finished_at is None for step in run.steps)


def test_node_error_step(samples):
    run = parse_one(sample(samples, "02-node-error"))
    last = run.steps[-1]
    assert (last.name, last.type) == ("lookup_order", "provider.invoke")
    assert last.error == "invalid payload for provider.invoke"
    assert "output_hash" not in last.attributes
    assert run.attributes["pack"] == {"pack_ref": "support-bot"}
    assert "git_sha" not in run.attributes


def test_flow_error_step_is_unknown_node(samples):
    run = parse_one(sample(samples, "03-flow-error-unknown"))
    last = run.steps[-1]
    assert last.name == "unknown" and last.type == "unknown"
    assert last.attributes["operation"] == "unknown"
    assert last.duration_ms == 0
    assert run.error == "flow_error: failed to render node input template"


def test_invocation_payload_is_step_input(samples):
    run = parse_one(sample(samples, "04-validation-capture-inputs"))
    assert all(step.input is not None for step in run.steps)
    for step in run.steps:
        assert step.input == step.attributes["invocation_json"]["payload"]
    assert run.steps[2].input["provider_id"] == "weather-api"


def test_without_invocation_json_input_is_none(samples):
    run = parse_one(sample(samples, "01-success-always"))
    assert all(step.input is None for step in run.steps)
    assert run.attributes["git_sha"]
    assert run.steps[0].attributes["input_hash"]["algorithm"] == "blake3"


def test_validation_issue_becomes_warning_log(samples):
    run = parse_one(sample(samples, "04-validation-capture-inputs"))
    assert len(run.logs) == 1
    (log,) = run.logs
    assert log.level == "warning"
    assert log.step_key == "3"
    assert log.message == "invalid_type at /operation: `operation` must be a non-empty string"
    assert log.fields["code"] == "invalid_type"
    assert run.steps[3].attributes["operation"] == ""
    assert run.status == Status.SUCCEEDED


def test_run_attributes(samples):
    run = parse_one(sample(samples, "01-success-always"))
    assert run.name == run.type == "weather_bot.main"
    assert run.attributes["trace_version"] == 1
    assert run.attributes["runner_version"] == "0.4.59"
    assert run.attributes["flow_version"] == "0.4.2"
    assert run.attributes["pack"]["resolved_digest"].startswith("sha256:")
    assert "times_approximate" not in run.attributes  # said once, by times_estimated
    assert run.times_estimated is True


def test_identity_is_the_content_hash(samples):
    path = sample(samples, "02-node-error")
    run = parse_one(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert run.external_id == run.fingerprint == digest
    assert run.origin == ""
    assert run.completeness is None


def test_dated_by_mtime(tmp_path, samples):
    path = tmp_path / "trace.json"
    path.write_bytes(sample(samples, "01-success-always").read_bytes())
    mtime = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    run = parse_one(path)
    total = sum(step.duration_ms for step in run.steps)
    assert run.finished_at == run.source_updated_at == mtime
    assert run.started_at == mtime - timedelta(milliseconds=total)
    assert run.duration_ms == total == 2788
    assert run.times_estimated is True


def test_twenty_steps_are_truncated(tmp_path):
    run = parse_one(write_trace(tmp_path, an_envelope([a_step(i) for i in range(20)])))
    assert run.truncated
    assert "20" in run.attributes["truncated_reason"]


def test_nineteen_steps_are_complete(tmp_path):
    run = parse_one(write_trace(tmp_path, an_envelope([a_step(i) for i in range(19)])))
    assert not run.truncated
    assert "truncated_reason" not in run.attributes


def test_unknown_keys_are_kept(tmp_path):
    envelope = an_envelope([a_step(0, future_field={"x": 1})])
    envelope["tenant"] = "acme"
    envelope["flow"]["label"] = "Demo"
    run = parse_one(write_trace(tmp_path, envelope))
    assert run.attributes["extra"] == {"tenant": "acme", "flow.label": "Demo"}
    assert run.steps[0].attributes["extra"] == {"future_field": {"x": 1}}


def test_empty_steps(tmp_path):
    run = parse_one(write_trace(tmp_path, an_envelope([])))
    assert run.steps == []
    assert run.status == Status.SUCCEEDED
    assert run.duration_ms == 0


def test_sniff_accepts_samples(samples):
    for name in SAMPLES:
        path = sample(samples, name)
        assert greentic.sniff(path, read_head(path)), name


def test_sniff_rejects_every_other_sample(samples):
    others = [
        path
        for path in samples.rglob("*")
        if path.is_file() and not (path.parent.parent.name == "greentic" and path.suffix == ".json")
    ]
    assert len(others) > 20
    for path in others:
        assert not greentic.sniff(path, read_head(path)), path


def test_sniff_rejects_tmp_file(tmp_path, samples):
    path = tmp_path / "trace.tmp"
    path.write_bytes(sample(samples, "01-success-always").read_bytes())
    assert not greentic.sniff(path, read_head(path))


@pytest.mark.parametrize("cut", [1, 10, 100, 500, 1000, -1])
def test_truncated_file(tmp_path, samples, cut):
    data = sample(samples, "01-success-always").read_bytes()
    path = tmp_path / "trace.json"
    path.write_bytes(data[:cut])
    with pytest.raises(ParseError, match=r"line \d+, column \d+") as info:
        list(greentic.parse(path))
    assert ".tmp" in str(info.value)


@pytest.mark.parametrize("content", [b"", b"  \n", b"\x00\xff\xfe\x89PNG\r\n\x1a\n garbage"])
def test_empty_or_binary_file(tmp_path, content):
    path = tmp_path / "trace.json"
    path.write_bytes(content)
    with pytest.raises(ParseError, match="invalid JSON"):
        list(greentic.parse(path))


def test_not_an_envelope(tmp_path):
    path = tmp_path / "trace.json"
    path.write_bytes(b'[{"trace_version": 1}]')
    with pytest.raises(ParseError, match="expected a JSON object"):
        list(greentic.parse(path))
    path.write_bytes(b'{"trace_version": 1}')
    with pytest.raises(ParseError, match="'flow'"):
        list(greentic.parse(path))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(steps={"a": 1}), "steps: expected a list"),
        (lambda e: e["steps"].__setitem__(1, "x"), r"steps\[1\]: expected an object"),
        (lambda e: e["steps"][2].pop("node_id"), r"steps\[2\]\.node_id: missing"),
        (lambda e: e["steps"][0].pop("duration_ms"), r"steps\[0\]\.duration_ms: missing"),
        (
            lambda e: e["steps"][2].update(duration_ms="x"),
            r'steps\[2\]\.duration_ms: expected a non-negative integer, got "x"',
        ),
        (
            lambda e: e["steps"][1].update(duration_ms=-3),
            r"steps\[1\]\.duration_ms: expected a non-negative integer, got -3",
        ),
        (lambda e: e["steps"][1].update(duration_ms=1.5), r"steps\[1\]\.duration_ms"),
        (lambda e: e["steps"][0].update(input_hash="abc"), r"steps\[0\]\.input_hash: expected"),
        (lambda e: e["steps"][2].update(output_hash=[1]), r"steps\[2\]\.output_hash: expected"),
        (lambda e: e["steps"][0].update(node_id=7), r"steps\[0\]\.node_id: expected a string"),
        (lambda e: e["steps"][1].update(error="boom"), r"steps\[1\]\.error: expected an object"),
        (lambda e: e["steps"][1].update(validation_issues={}), r"steps\[1\]\.validation_issues"),
        (lambda e: e.update(flow="demo"), "flow: expected an object"),
        (lambda e: e["flow"].pop("id"), r"flow\.id: expected a string"),
    ],
)
def test_wrong_shapes_name_the_place(tmp_path, change, message):
    envelope = an_envelope([a_step(i) for i in range(3)])
    change(envelope)
    with pytest.raises(ParseError, match=message):
        list(greentic.parse(write_trace(tmp_path, envelope)))
