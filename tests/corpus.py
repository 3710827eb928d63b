"""A bad-input corpus generated from the real samples (the hardening issue).

Plain functions, no Django. Each family's generator writes one kind of bad
file into a directory (one subdirectory per case); `generate(family, samples,
directory)` returns that family's `Case`s and `build_corpus(samples, directory)`
all of them: the path to ingest, and what must happen:

- `error`: the file must fail with an error naming it and the reason;
- `partial`: the file must be ingested, with a self-consistent (partial) result;
- `either`: one or the other, never a crash.

Everything is derived from the samples programmatically (every trace sample is
truncated, every JSON field gets every wrong type, every column of the tables a
parser reads is dropped, ...), so a new sample or a new field is covered
without editing this file. Generation is deterministic: the same samples give
the same case names, which pytest-xdist requires of every worker.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import stat
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ERROR, PARTIAL, EITHER = "error", "partial", "either"

# The limits of traces/ingest/archives.py, lowered for the zip cases that test them.
BOMB_PATCHES = (("MAX_RATIO", 10), ("BOMB_FLOOR", 1024 * 1024))
BUDGET_PATCHES = (("MAX_TOTAL_BYTES", 1024 * 1024),)
MEMBERS_PATCHES = (("MAX_MEMBERS", 3),)

HUGE_STRING_BYTES = 100 * 1024 * 1024
DEEP_LEVELS = 100_000


@dataclass(frozen=True)
class Case:
    name: str  # unique; "<family>/<sample>/<detail>", the test id
    path: Path  # a file, a directory or a zip archive to ingest
    expect: str  # ERROR, PARTIAL or EITHER
    family: str = ""
    # The format the case was derived from ("" when none or several): the known-good
    # file of the batch must not share its run ids.
    source_format: str = ""
    # (name, value) of traces.ingest.archives limits to lower for this case.
    patches: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Sample:
    format: str  # duckflux | greentic | traceos | runs | workflow | otlp
    kind: str  # json | jsonl | txt | sqlite | events
    path: Path
    label: str


def trace_samples(samples: Path) -> list[Sample]:
    """Every trace file among the samples (not the READMEs, manifests, stats...)."""
    found: list[Sample] = []
    for folder in ("json", "txt", "sqlite", "running-snapshot"):
        for path in sorted((samples / "duckflux" / folder).glob("*")):
            if path.suffix in (".json", ".txt", ".sqlite"):
                prefix = "snapshot-" if folder == "running-snapshot" else ""
                kind = path.suffix[1:]
                found.append(
                    Sample("duckflux", kind, path, f"duckflux-{prefix}{kind}-{path.stem[:8]}")
                )
    for path in sorted(samples.glob("greentic/*/trace.json")):
        found.append(Sample("greentic", "json", path, f"greentic-{path.parent.name[:2]}"))
    for path in sorted((samples / "traceos").glob("*.json*")):
        if path.name in ("traces.json", "traces.jsonl") or path.name.startswith("replay-"):
            kind = "jsonl" if path.suffix == ".jsonl" else "json"
            label = path.stem.replace("replay-tr_", "replay-")[:16]
            found.append(Sample("traceos", kind, path, f"traceos-{label}-{kind}"))
    found.append(Sample("runs", "sqlite", samples / "runs" / "runs.sqlite", "runs"))
    found.append(Sample("workflow", "sqlite", samples / "workflow" / "workflow.db", "workflow-db"))
    found.append(
        Sample("workflow", "events", samples / "workflow" / "events.db", "workflow-events")
    )
    for path in sorted((samples / "otlp").glob("*.json*")):
        kind = "jsonl" if path.suffix == ".jsonl" else "json"
        found.append(Sample("otlp", kind, path, f"otlp-{path.stem}"))
    return found


# --- writing cases ------------------------------------------------------------------------


class Corpus:
    """Writes case files, one directory per case (the workflow parser looks for
    events.db among a file's neighbours), and collects the cases."""

    def __init__(self, root: Path):
        self.root = root
        self.cases: list[Case] = []
        self._names: set[str] = set()

    def _directory(self, family: str, label: str, detail: str) -> tuple[str, Path]:
        base = f"{family}/{label}/{_safe(detail)}"
        name, counter = base, 1
        while name in self._names:
            counter += 1
            name = f"{base}-{counter}"
        self._names.add(name)
        directory = self.root / name
        directory.mkdir(parents=True)
        return name, directory

    def add(
        self,
        family: str,
        sample: Sample | None,
        detail: str,
        data: bytes,
        expect: str,
        *,
        filename: str = "",
        label: str = "",
    ) -> Path:
        name, directory = self._directory(family, label or _label(sample), detail)
        path = directory / (filename or sample.path.name)
        path.write_bytes(data)
        self._companion(sample, directory)
        self.cases.append(Case(name, path, expect, family, sample.format if sample else ""))
        return path

    def add_sqlite(
        self,
        family: str,
        sample: Sample,
        detail: str,
        mutate: Callable[[sqlite3.Connection], Any],
        expect: str,
    ) -> Path:
        """A copy of a SQLite sample changed by `mutate(conn)` (foreign keys off)."""
        name, directory = self._directory(family, sample.label, detail)
        path = directory / sample.path.name
        shutil.copyfile(sample.path, path)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            mutate(conn)
        finally:
            conn.close()
        self._companion(sample, directory)
        self.cases.append(Case(name, path, expect, family, sample.format))
        return path

    def add_path(
        self,
        family: str,
        label: str,
        detail: str,
        build: Callable[[Path], Path],
        expect: str,
        *,
        source_format: str = "",
        patches: tuple[tuple[str, int], ...] = (),
    ) -> Path:
        """A case whose files `build(directory)` makes; it returns the path to ingest."""
        name, directory = self._directory(family, label, detail)
        path = build(directory)
        self.cases.append(Case(name, path, expect, family, source_format, patches))
        return path

    @staticmethod
    def _companion(sample: Sample | None, directory: Path) -> None:
        # events.db is read as part of the workflow.db beside it.
        if sample is not None and sample.kind == "events":
            shutil.copyfile(sample.path.parent / "workflow.db", directory / "workflow.db")


def _label(sample: Sample | None) -> str:
    return sample.label if sample is not None else "misc"


def _safe(detail: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._=+-]+", "_", detail).strip("_") or "x"
    if len(text) > 80:
        text = text[:64] + "-" + hashlib.sha1(detail.encode()).hexdigest()[:8]
    return text


# --- JSON helpers -------------------------------------------------------------------------

# Values whose content is free-form in the format (any JSON): replaced whole, not walked.
OPAQUE = {
    "duckflux": {"inputs", "input", "output"},
    "greentic": {"payload", "details"},
    "traceos": {"payload", "meta"},
}
WRONG_TYPES: dict[str, Any] = {
    "null": None,
    "number": 12345.5,
    "string": "wrong type",
    "bool": True,
    "list": [1, "x", None],
    "object": {"unexpected": "object"},
}


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def is_json_sample(sample: Sample) -> bool:
    return sample.kind in ("json", "jsonl")


def load_json(sample: Sample) -> Any:
    text = sample.path.read_text(encoding="utf-8")
    if sample.kind == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def dump_json(sample: Sample, document: Any) -> bytes:
    """The document written the way the sample is (pretty JSON, or JSON lines)."""
    if sample.kind == "jsonl":
        lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in document]
        return ("\n".join(lines) + "\n").encode()
    return json.dumps(document, ensure_ascii=False, indent=2).encode()


# The first span of an OTLP document (of its first line, in JSON lines: in_document()).
_FIRST_SPAN = ("resourceSpans", 0, "scopeSpans", 0, "spans", 0)


def in_document(sample: Sample, path: tuple) -> tuple:
    """A path into an OTLP document, within the sample's first line when it is JSON
    lines (the other formats' paths name their record)."""
    return (0, *path) if sample.format == "otlp" and sample.kind == "jsonl" else path


def walk_json(
    value: Any, path: tuple = (), opaque: frozenset | set = frozenset()
) -> Iterator[tuple[tuple, Any]]:
    """(path, value) of every node, parents first; `opaque` keys are not entered."""
    yield path, value
    if path and path[-1] in opaque:
        return
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk_json(child, (*path, key), opaque)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk_json(child, (*path, index), opaque)


def general_path(document: Any, path: tuple, by_type: bool) -> tuple:
    """The path with list indexes as `*` (`*step` for traceos records of type step)."""
    general, node = [], document
    for part in path:
        child = node[part]
        if isinstance(part, int):
            kind = child.get("type") if by_type and isinstance(child, dict) else None
            general.append(f"*{kind}" if isinstance(kind, str) else "*")
        else:
            general.append(part)
        node = child
    return tuple(general)


def replaced(document: Any, path: tuple, value: Any) -> Any:
    """A deep copy of `document` with the node at `path` replaced (or removed if
    `value` is _REMOVE)."""
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    node = copy
    for part in path[:-1]:
        node = node[part]
    if value is _REMOVE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copy


_REMOVE = object()


def _path_text(path: tuple) -> str:
    return ".".join(str(part) for part in path) or "root"


def _json_parses(data: bytes, jsonl: bool) -> bool:
    try:
        text = data.decode("utf-8")
        if jsonl:
            for line in text.splitlines():
                if line.strip():
                    json.loads(line)
        else:
            json.loads(text)
    except ValueError:
        return False
    return True


# --- 1. truncation -----------------------------------------------------------------------


def truncation_cases(samples: Path, corpus: Corpus, offsets: int = 20) -> None:
    """Every trace sample cut at `offsets` points spread over it, 0 and len-1 included."""
    for sample in trace_samples(samples):
        data = sample.path.read_bytes()
        last = len(data) - 1
        cuts = sorted({0, last, *(round(i * last / (offsets - 1)) for i in range(offsets))})
        for cut in cuts:
            part = data[:cut]
            corpus.add("truncated", sample, f"at-{cut}", part, _truncation_expect(sample, part))


def _truncation_expect(sample: Sample, data: bytes) -> str:
    if not data:
        return ERROR  # empty file
    if sample.kind == "json":
        # A cut JSON document is an error unless the cut only removed trailing space.
        return EITHER if _json_parses(data, jsonl=False) else ERROR
    # JSON lines drop a cut last line; text traces and SQLite databases can be
    # cut at a point where what is left is an earlier, valid state.
    return EITHER


# --- 2. wrong JSON types ------------------------------------------------------------------


def wrong_type_cases(samples: Path, corpus: Corpus) -> None:
    """Every field of every JSON sample (each distinct field path once per format and
    encoding) replaced by each JSON type it is not."""
    done: set[tuple] = set()
    for sample in trace_samples(samples):
        if not is_json_sample(sample):
            continue
        document = load_json(sample)
        by_type = sample.format == "traceos"
        for path, value in walk_json(document, (), OPAQUE.get(sample.format, set())):
            if sample.kind == "jsonl" and not path:
                continue  # JSON lines have no top-level value
            general = general_path(document, path, by_type)
            if (sample.format, sample.kind, general) in done:
                continue
            done.add((sample.format, sample.kind, general))
            for type_name, wrong in WRONG_TYPES.items():
                if _kind_of(value) == type_name:
                    continue
                data = dump_json(sample, replaced(document, path, wrong))
                corpus.add("wrong-type", sample, f"{_path_text(general)}={type_name}", data, EITHER)


# --- 3. NaN and Infinity ------------------------------------------------------------------

_LITERALS = ("NaN", "Infinity", "-Infinity")
_PLACEHOLDER = "__tracer_corpus_literal__"


def nan_cases(samples: Path, corpus: Corpus) -> None:
    """Every numeric field of the JSON samples as a NaN / Infinity / -Infinity literal
    (not JSON, but what JavaScript's and Python's writers produce); in SQLite, the
    numeric columns of the read tables as REAL infinities and 'NaN' text."""
    done: set[tuple] = set()
    for sample in trace_samples(samples):
        if not is_json_sample(sample):
            continue
        document = load_json(sample)
        by_type = sample.format == "traceos"
        for path, value in walk_json(document, (), OPAQUE.get(sample.format, set())):
            if _kind_of(value) != "number":
                continue
            general = general_path(document, path, by_type)
            if (sample.format, sample.kind, general) in done:
                continue
            done.add((sample.format, sample.kind, general))
            text = dump_json(sample, replaced(document, path, _PLACEHOLDER)).decode()
            for literal in _LITERALS:
                data = text.replace(f'"{_PLACEHOLDER}"', literal).encode()
                corpus.add("nan-infinity", sample, f"{_path_text(general)}={literal}", data, EITHER)
    for sample in _sqlite_representatives(samples):
        for table, column in _numeric_columns(sample):
            values = {"inf": "9e999", "-inf": "-9e999", "nan-text": "'NaN'"}
            _column_cases(corpus, "nan-infinity", sample, table, column, values)
    # duckflux TXT writes numbers as text.
    for sample in trace_samples(samples):
        if sample.kind == "txt":
            text = sample.path.read_text(encoding="utf-8")
            for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
                changed = re.sub(r"(?m)^duration: [^\n]*ms$", f"duration: {literal}ms", text)
                if changed != text:
                    corpus.add(
                        "nan-infinity", sample, f"duration={literal}", changed.encode(), EITHER
                    )


# --- 4. invalid UTF-8 and NUL bytes --------------------------------------------------------

_RAW_BYTES = {
    "ff": b"\xff",
    "lone-continuation": b"\x80",
    "encoded-surrogate": b"\xed\xa0\x80",
    "cut-sequence": b"\xe2\x82",
    "nul": b"\x00",
}
_ESCAPES = {"escaped-nul": b"\\u0000", "escaped-lone-surrogate": b"\\ud800"}


def utf8_nul_cases(samples: Path, corpus: Corpus) -> None:
    """Invalid UTF-8 and NUL bytes inserted into every text sample: inside a string
    value near the middle (every kind), at the start and at the end (two kinds
    each); JSON escapes of NUL and of a lone surrogate inside string values; in
    SQLite, blobs that are not UTF-8 and text with NUL in every text column."""
    for sample in trace_samples(samples):
        if sample.kind not in ("json", "jsonl", "txt"):
            continue
        data = sample.path.read_bytes()
        middle = _string_interior(data, len(data) // 2)
        first = _string_interior(data, 0)
        for name, raw in _RAW_BYTES.items():
            places = [("mid-string", middle)]
            # At the edges a byte only makes the file unreadable: two kinds suffice there.
            if name in ("ff", "nul"):
                places.append(("start", 0))
            if name in ("cut-sequence", "nul"):
                places.append(("end", len(data)))
            for where, offset in places:
                corpus.add(
                    "utf8-nul",
                    sample,
                    f"{name}-at-{where}",
                    data[:offset] + raw + data[offset:],
                    EITHER,
                )
        if sample.kind == "txt":
            continue
        for name, escape in _ESCAPES.items():
            for where, offset in (("first-string", first), ("mid-string", middle)):
                corpus.add(
                    "utf8-nul",
                    sample,
                    f"{name}-in-{where}",
                    data[:offset] + escape + data[offset:],
                    EITHER,
                )
    for sample in _sqlite_representatives(samples):
        for table, column in _text_columns(sample):
            values = {
                "invalid-utf8-blob": "X'61FF00FE62'",
                "nul-text": "'a' || char(0) || 'b'",
            }
            _column_cases(corpus, "utf8-nul", sample, table, column, values)


def _string_interior(data: bytes, start: int) -> int:
    """An offset just inside a JSON string value (after `": "`) at or after `start`;
    for text files, just after the next `: `."""
    for marker in (b'": "', b": "):
        found = data.find(marker, start)
        if found < 0:
            found = data.find(marker)
        if found >= 0:
            return found + len(marker)
    return len(data) // 2


# --- 5. a 100 MB string -------------------------------------------------------------------


def huge_string_case(samples: Path, directory: Path, fmt: str) -> Case:
    """A trace of `fmt` with one string value of HUGE_STRING_BYTES, streamed to disk
    (never held in memory here)."""
    placeholder: Any = _PLACEHOLDER
    by_format = {
        "duckflux": ("duckflux/json", ("steps", 0, "output"), placeholder),
        # A failing step's error message (greentic keeps payloads twice: input and
        # attributes; an error once on the step and once on the run).
        "greentic": (
            "greentic/04-validation-capture-inputs",
            ("steps", 0, "error"),
            {"code": "node_error", "message": placeholder, "details": None},
        ),
        "traceos": ("traceos/replay-tr_1795288829060", (1, "meta"), placeholder),
    }
    folder, path, value = by_format[fmt]
    sample = next(s for s in trace_samples(samples) if folder in str(s.path))
    document = replaced(load_json(sample), path, value)
    head, tail = dump_json(sample, document).split(f'"{_PLACEHOLDER}"'.encode())
    target = directory / f"huge-{fmt}" / sample.path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    chunk = b"0123456789abcdefghijklmnopqrstuvwxyz\xc3\xa9 " * (1 << 14)  # ~630 kB of text
    with open(target, "wb") as handle:
        handle.write(head + b'"')
        written = 0
        while written < HUGE_STRING_BYTES:
            part = chunk[: HUGE_STRING_BYTES - written]
            part = part[: len(part.decode("utf-8", errors="ignore").encode())]
            if not part:
                break
            handle.write(part)
            written += len(part)
        handle.write(b'"' + tail)
    return Case(f"huge-string/{fmt}", target, EITHER, "huge-string", fmt)


# --- 6. deep nesting ----------------------------------------------------------------------


def _deep(levels: int, kind: str = "array") -> str:
    if kind == "array":
        return "[" * levels + "]" * levels
    return '{"a":' * levels + "1" + "}" * levels


def nesting_cases(samples: Path, corpus: Corpus, levels: int = DEEP_LEVELS) -> None:
    """JSON nested `levels` deep, as a whole file (under every trace file name) and
    as the value of a free-form field of every format; also 300 and 1020 levels,
    which orjson reads (up to 1024) but neither it (254) nor Python's json (about
    1000) writes back."""
    for depth in (levels, 1020):
        whole = {"array": _deep(depth), "object": _deep(depth, "object")}
        names = ("trace.json", "traces.jsonl", "3f1d4b52-0000-4000-8000-000000000000.json", "x.txt")
        for kind, text in whole.items():
            for name in names:
                detail = f"whole-file-{depth}-{kind}-{name}"
                corpus.add(
                    "deep-nesting",
                    None,
                    detail,
                    text.encode(),
                    ERROR,
                    filename=name,
                    label="whole-file",
                )
    fields = {
        "duckflux": ("steps", 0, "output"),
        "greentic": ("steps", 0, "invocation_json", "payload"),
        "traceos": (1, "meta"),
        "otlp": (*_FIRST_SPAN, "name"),
    }
    done: set[tuple] = set()
    for sample in trace_samples(samples):
        if (sample.format, sample.kind) in done or sample.kind not in ("json", "jsonl", "txt"):
            continue
        done.add((sample.format, sample.kind))
        for depth in (levels, 1020, 300):
            deep = {"array": _deep(depth), "object": _deep(depth, "object")}
            if sample.kind == "txt":
                text = sample.path.read_text(encoding="utf-8")
                changed = re.sub(r"(?m)^output: .*$", "output: " + deep["array"], text, count=1)
                corpus.add(
                    "deep-nesting", sample, f"first-output-{depth}-array", changed.encode(), EITHER
                )
                continue
            path = in_document(sample, fields[sample.format])
            document = load_json(sample)
            if sample.format == "greentic":  # not every step has invocation_json
                document = replaced(document, path[:-1], {"component_id": "x", "operation": "y"})
            text = dump_json(sample, replaced(document, path, _PLACEHOLDER)).decode()
            for kind, value in deep.items():
                data = text.replace(f'"{_PLACEHOLDER}"', value).encode()
                corpus.add(
                    "deep-nesting", sample, f"{_path_text(path)}-{depth}-{kind}", data, EITHER
                )
    for sample in _sqlite_representatives(samples):
        for table, column in _text_columns(sample):
            if not _is_payload_column(column):
                continue
            for depth in (levels, 1020, 300):
                corpus.add_sqlite(
                    "deep-nesting",
                    sample,
                    f"{table}.{column}-{depth}",
                    _set_first_row(table, column, "'" + _deep(depth) + "'"),
                    EITHER,
                )


def _is_payload_column(column: str) -> bool:
    return column in (
        "input", "output", "inputs", "context", "metadata", "fields", "event_data",
        "input_data", "output_data", "trigger_data",
    )  # fmt: skip


# --- 7. timestamps and durations ----------------------------------------------------------

BAD_TIMES: dict[str, Any] = {
    "year-99999": "99999-01-01T00:00:00Z",
    "minus-1e20": -1e20,
    "plus-1e20": 1e20,
    "not-a-date": "not a date",
    "month-13": "2026-13-45T99:99:99Z",
    "max-minus-5h": "9999-12-31T23:59:59-05:00",
    "min-plus-5h": "0001-01-01T00:00:00+05:00",
    "empty": "",
}
# In SQLite columns: the others take the same paths there (text that is not a date,
# a number read as epoch seconds or milliseconds).
SQL_BAD_TIMES = ("year-99999", "minus-1e20", "not-a-date", "max-minus-5h", "min-plus-5h")
BAD_EPOCHS: dict[str, Any] = {
    "minus-1e20": -1e20,
    "plus-1e20": 1e20,
    "past-year-9999": 253402300800000,
    "before-year-1": -62135596800001,
    "2-pow-70": 2**70,
    "not-a-date": "not a date",
    "iso-text": "2026-01-01T00:00:00Z",
}
BAD_DURATIONS: dict[str, Any] = {
    "minus-5": -5,
    "minus-1e20": -1e20,
    "u64-max": 2**64 - 1,
    "1e15": 10**15,
    "2-pow-64": 2**64,
}


def timestamp_cases(samples: Path, corpus: Corpus) -> None:
    """Times out of range or unreadable, and negative or absurd durations, in the
    time fields of every format."""
    json_fields = {
        "duckflux": {
            "time": [("execution", "startedAt"), ("execution", "finishedAt"),
                     ("steps", 0, "startedAt"), ("steps", 0, "finishedAt")],
            "duration": [("execution", "duration"), ("steps", 0, "duration")],
        },
        "greentic": {"time": [], "duration": [("steps", 0, "duration_ms")]},
        "traceos": {
            "epoch": [(0, "ts"), (1, "at"), (2, "at")],
            "duration": [],
        },
        "otlp": {
            "time": [(*_FIRST_SPAN, "startTimeUnixNano"), (*_FIRST_SPAN, "endTimeUnixNano")],
            "epoch": [(*_FIRST_SPAN, "startTimeUnixNano"), (*_FIRST_SPAN, "endTimeUnixNano")],
        },
    }  # fmt: skip
    done: set[tuple] = set()
    for sample in trace_samples(samples):
        if not is_json_sample(sample) or (sample.format, sample.kind) in done:
            continue
        done.add((sample.format, sample.kind))
        document = load_json(sample)
        fields = json_fields[sample.format]
        for group, values in (
            ("time", BAD_TIMES),
            ("epoch", BAD_EPOCHS),
            ("duration", BAD_DURATIONS),
        ):
            for path in fields.get(group, []):
                for label, value in values.items():
                    data = dump_json(sample, replaced(document, in_document(sample, path), value))
                    corpus.add("timestamps", sample, f"{_path_text(path)}={label}", data, EITHER)
        if sample.format == "traceos":
            # Time running backwards: an exit before its enter gives a negative duration.
            backwards = replaced(document, (2, "at"), document[1]["at"] - 60_000)
            corpus.add(
                "timestamps",
                sample,
                "exit-before-enter-in-time",
                dump_json(sample, backwards),
                EITHER,
            )
    for sample in trace_samples(samples):
        if sample.kind == "txt" and (sample.format, "txt") not in done:
            done.add((sample.format, "txt"))
            text = sample.path.read_text(encoding="utf-8")
            for label, value in BAD_TIMES.items():
                for which, count in (("header", 1), ("all", 0)):
                    changed = re.sub(
                        r"(?m)^startedAt: .*$", f"startedAt: {value}", text, count=count
                    )
                    corpus.add(
                        "timestamps", sample, f"startedAt-{which}={label}", changed.encode(), EITHER
                    )
            for label, value in BAD_DURATIONS.items():
                changed = re.sub(r"(?m)^duration: .*ms$", f"duration: {value}ms", text)
                corpus.add("timestamps", sample, f"duration={label}", changed.encode(), EITHER)
    for sample in _sqlite_representatives(samples):
        for table, column in _columns_of(sample):
            if column.endswith("_at") or column == "ts":
                values = {k: _sql_literal(BAD_TIMES[k]) for k in SQL_BAD_TIMES}
            elif column == "duration_ms":
                values = {k: _sql_literal(v) for k, v in BAD_DURATIONS.items()}
            else:
                continue
            _column_cases(corpus, "timestamps", sample, table, column, values)


def _sql_literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return repr(float(value))
    return repr(value)


# --- 8. SQLite structure ------------------------------------------------------------------

# The tables each SQLite format reads (the others are dropped too, but their
# columns are left alone).
READ_TABLES = {
    "duckflux": ("executions", "steps"),
    "runs": ("runs", "steps", "calls", "step_links"),
    "workflow": ("workflow_executions", "execution_steps", "execution_logs"),
    "events": ("execution_events",),
}


def _sqlite_samples(samples: Path) -> list[Sample]:
    return [s for s in trace_samples(samples) if s.kind in ("sqlite", "events")]


def _sqlite_representatives(samples: Path) -> list[Sample]:
    """One SQLite sample per schema: the duckflux samples share theirs."""
    chosen: dict[tuple, Sample] = {}
    for sample in _sqlite_samples(samples):
        chosen.setdefault((sample.format, sample.kind), sample)
    return list(chosen.values())


def _read_tables(sample: Sample) -> tuple[str, ...]:
    return READ_TABLES["events" if sample.kind == "events" else sample.format]


def _columns_of(sample: Sample) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"{sample.path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [
            (table, row[1])
            for table in _read_tables(sample)
            for row in conn.execute(f'PRAGMA table_info("{table}")')
        ]
    finally:
        conn.close()


def _column_types(sample: Sample) -> dict[tuple[str, str], str]:
    """Declared types of the read tables' columns, without INTEGER PRIMARY KEYs
    (the rowid: SQLite refuses anything but an integer there)."""
    conn = sqlite3.connect(f"{sample.path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {
            (table, row[1]): (row[2] or "").upper()
            for table in _read_tables(sample)
            for row in conn.execute(f'PRAGMA table_info("{table}")')
            if not (row[5] and (row[2] or "").upper() == "INTEGER")
        }
    finally:
        conn.close()


def _numeric_columns(sample: Sample) -> list[tuple[str, str]]:
    types = _column_types(sample)
    return [
        key
        for key, declared in types.items()
        if "INT" in declared or "REAL" in declared or key[1].endswith(("_ms", "_num", "count"))
    ]


def _text_columns(sample: Sample) -> list[tuple[str, str]]:
    types = _column_types(sample)
    return [key for key, declared in types.items() if "INT" not in declared]


def _column_cases(
    corpus: Corpus, family: str, sample: Sample, table: str, column: str, values: dict[str, str]
) -> None:
    """Bad values in a column: one case with each in its own row where the parser
    reads rows leniently (runs, workflow: a bad value in one row cannot hide the
    next) and the table has rows enough; else a case per value."""
    if sample.format != "duckflux" and _row_count(sample, table) >= len(values):
        detail = f"{table}.{column}={','.join(values)}"
        corpus.add_sqlite(family, sample, detail, _set_rows(table, column, values), EITHER)
        return
    for label, sql_value in values.items():
        mutate = _set_first_row(table, column, sql_value)
        corpus.add_sqlite(family, sample, f"{table}.{column}={label}", mutate, EITHER)


def _row_count(sample: Sample, table: str) -> int:
    conn = sqlite3.connect(f"{sample.path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    finally:
        conn.close()


def _set_rows(
    table: str, column: str, values: dict[str, str]
) -> Callable[[sqlite3.Connection], None]:
    """Row k (in rowid order) gets the k-th value."""

    def mutate(conn: sqlite3.Connection) -> None:
        rowids = [row[0] for row in conn.execute(f'SELECT rowid FROM "{table}" ORDER BY rowid')]
        for rowid, sql_value in zip(rowids, values.values(), strict=False):
            conn.execute(f'UPDATE "{table}" SET "{column}" = {sql_value} WHERE rowid = ?', (rowid,))

    return mutate


def _set_first_row(table: str, column: str, sql_value: str) -> Callable[[sqlite3.Connection], None]:
    def mutate(conn: sqlite3.Connection) -> None:
        conn.execute(
            f'UPDATE "{table}" SET "{column}" = {sql_value} '
            f'WHERE rowid = (SELECT min(rowid) FROM "{table}")'
        )

    return mutate


def _tables(sample: Sample) -> list[str]:
    conn = sqlite3.connect(f"{sample.path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
    finally:
        conn.close()


def drop_column(conn: sqlite3.Connection, table: str, column: str) -> None:
    """ALTER TABLE DROP COLUMN where SQLite allows it, else recreate the table without it."""
    try:
        conn.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        return
    except sqlite3.OperationalError:
        pass
    keep = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")') if row[1] != column]
    columns = ", ".join(f'"{name}"' for name in keep)
    conn.execute("BEGIN")
    conn.execute(f'CREATE TABLE "tracer_corpus_copy" AS SELECT {columns} FROM "{table}"')
    conn.execute(f'DROP TABLE "{table}"')
    conn.execute(f'ALTER TABLE "tracer_corpus_copy" RENAME TO "{table}"')
    conn.execute("COMMIT")


def without_constraints(conn: sqlite3.Connection, table: str) -> None:
    """Recreate `table` with its columns and rows but no primary key, unique
    constraint or index, so that duplicate ids can be inserted."""
    columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
    names = ", ".join(f'"{name}"' for name in columns)
    conn.execute("BEGIN")
    conn.execute(f'CREATE TABLE "tracer_corpus_copy" ({names})')
    conn.execute(f'INSERT INTO "tracer_corpus_copy" SELECT {names} FROM "{table}"')
    conn.execute(f'DROP TABLE "{table}"')
    conn.execute(f'ALTER TABLE "tracer_corpus_copy" RENAME TO "{table}"')
    conn.execute("COMMIT")


def sqlite_structure_cases(samples: Path, corpus: Corpus) -> None:
    """Missing tables and columns, garbage pages, and files that only look like SQLite."""
    for sample in _sqlite_samples(samples):
        for table in _tables(sample):

            def drop(conn, table=table):
                conn.execute(f'DROP TABLE "{table}"')

            corpus.add_sqlite("sqlite-structure", sample, f"drop-table-{table}", drop, EITHER)
        data = sample.path.read_bytes()
        page = int.from_bytes(data[16:18], "big") or 65536
        pages = len(data) // page
        targets = {
            "page-1-body": 100,
            "page-2": page,
            f"page-{pages // 2 + 1}": (pages // 2) * page,
        }
        targets[f"page-{pages}-last"] = (pages - 1) * page
        for label, offset in targets.items():
            size = page - 100 if offset == 100 else page
            corpus.add(
                "sqlite-structure", sample, f"garbage-{label}", _garbage(data, offset, size), EITHER
            )
        for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
            offset = int(len(data) * fraction)
            corpus.add(
                "sqlite-structure",
                sample,
                f"garbage-64-bytes-at-{fraction}",
                _garbage(data, offset, 64),
                EITHER,
            )
        corpus.add(
            "sqlite-structure", sample, "garbage-header-page-count", _garbage(data, 28, 4), EITHER
        )
        for fraction in (0.25, 0.5, 0.75):  # everything after shifts: pages misaligned
            offset = int(len(data) * fraction)
            cut = data[:offset] + data[offset + 2 :]
            corpus.add("sqlite-structure", sample, f"2-bytes-deleted-at-{fraction}", cut, EITHER)
    for sample in _sqlite_representatives(samples):
        for table, column in _columns_of(sample):

            def mutate(conn, table=table, column=column):
                drop_column(conn, table, column)

            corpus.add_sqlite(
                "sqlite-structure", sample, f"drop-column-{table}.{column}", mutate, EITHER
            )
    # A schema that is not UTF-8: SQLite quotes it in its error messages.
    for sample in _sqlite_representatives(samples):
        table = _read_tables(sample)[0]
        path = corpus.add_sqlite(
            "sqlite-structure",
            sample,
            "schema-not-utf8",
            lambda conn, table=table: conn.execute(f'ALTER TABLE "{table}" ADD COLUMN zzqqzzqq'),
            EITHER,
        )
        path.write_bytes(path.read_bytes().replace(b"zzqqzzqq", b"zz\xff\xfezzqq"))
    # Not SQLite at all, or SQLite without the tables, under SQLite names.
    text = b"this is a text file, not a SQLite database\n"
    header_only = b"SQLite format 3\x00" + bytes(range(256)) * 4
    names = (
        "trace.sqlite",
        "3f1d4b52-0000-4000-8000-000000000000.sqlite",
        "runs.sqlite",
        "workflow.db",
        "events.db",
    )
    for name in names:
        corpus.add(
            "sqlite-structure",
            None,
            f"text-as-{name}",
            text,
            ERROR,
            filename=name,
            label="fake-sqlite",
        )
        corpus.add(
            "sqlite-structure",
            None,
            f"header-only-{name}",
            header_only,
            ERROR,
            filename=name,
            label="fake-sqlite",
        )

        def empty_db(directory: Path, name=name) -> Path:
            path = directory / name
            sqlite3.connect(path).close()  # zero bytes: SQLite creates the file lazily
            conn = sqlite3.connect(path)
            conn.execute("CREATE TABLE unrelated (x)")
            conn.commit()
            conn.close()
            return path

        corpus.add_path(
            "sqlite-structure", "fake-sqlite", f"unrelated-tables-{name}", empty_db, ERROR
        )


def _garbage(data: bytes, offset: int, size: int) -> bytes:
    noise = hashlib.sha256(f"{offset}:{size}".encode()).digest()
    noise = (noise * (size // len(noise) + 1))[:size]
    return data[:offset] + noise + data[offset + size :]


# --- 9. ids: cycles, orphans, duplicates ----------------------------------------------------


def id_cases(samples: Path, corpus: Corpus) -> None:
    """The runs database's step tree broken every way (cycles, orphans, duplicate
    ids), and the same kind of damage in the workflow and duckflux databases."""
    by_label = {s.label: s for s in trace_samples(samples)}
    runs = by_label["runs"]

    def first_child(conn) -> tuple[str, str]:
        return conn.execute(
            "SELECT id, parent_step_id FROM steps WHERE parent_step_id IS NOT NULL "
            "ORDER BY rowid LIMIT 1"
        ).fetchone()

    def self_parent(conn):
        child, _parent = first_child(conn)
        conn.execute("UPDATE steps SET parent_step_id = id WHERE id = ?", (child,))

    def two_cycle(conn):
        child, parent = first_child(conn)
        conn.execute("UPDATE steps SET parent_step_id = ? WHERE id = ?", (child, parent))

    def every_step_in_one_cycle(conn):
        ids = [row[0] for row in conn.execute("SELECT id FROM steps ORDER BY rowid")]
        for index, step in enumerate(ids):
            conn.execute("UPDATE steps SET parent_step_id = ? WHERE id = ?", (ids[index - 1], step))

    def parent_missing(conn):
        child, _parent = first_child(conn)
        conn.execute("UPDATE steps SET parent_step_id = 'no-such-step' WHERE id = ?", (child,))

    def parent_in_other_run(conn):
        child, _ = first_child(conn)
        other = conn.execute(
            "SELECT id FROM steps WHERE run_id IS NOT (SELECT run_id FROM steps WHERE id = ?) "
            "AND run_id IS NOT NULL LIMIT 1",
            (child,),
        ).fetchone()[0]
        conn.execute("UPDATE steps SET parent_step_id = ? WHERE id = ?", (other, child))

    def orphan_calls(conn):
        conn.execute("UPDATE calls SET step_id = 'no-such-step-' || rowid WHERE rowid % 2 = 0")

    def orphan_links(conn):
        conn.execute("UPDATE step_links SET step_id = 'no-such-step-' || rowid WHERE rowid % 2 = 0")

    def orphan_steps(conn):
        conn.execute("UPDATE steps SET run_id = 'no-such-run' WHERE rowid % 3 = 0")

    def duplicate_rows(table: str, change: str = ""):
        def mutate(conn):
            without_constraints(conn, table)
            conn.execute(f'INSERT INTO "{table}" SELECT * FROM "{table}"')
            if change:
                conn.execute(change)

        return mutate

    def null_run_ids(conn):
        without_constraints(conn, "runs")
        conn.execute("UPDATE runs SET id = NULL WHERE rowid <= 2")

    def standalone_named_like_run(conn):
        run_id = conn.execute("SELECT id FROM runs ORDER BY rowid LIMIT 1").fetchone()[0]
        step = conn.execute("SELECT id FROM steps WHERE run_id IS NULL LIMIT 1").fetchone()
        if step is None:
            conn.execute("UPDATE steps SET run_id = NULL, parent_step_id = NULL WHERE rowid = 1")
            step = conn.execute("SELECT id FROM steps WHERE rowid = 1").fetchone()
        conn.execute("UPDATE steps SET id = ? WHERE id = ?", (run_id, step[0]))

    def deep_chain(conn):
        run_id = conn.execute("SELECT id FROM runs ORDER BY rowid LIMIT 1").fetchone()[0]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(steps)")]
        template = conn.execute(
            "SELECT * FROM steps WHERE run_id = ? LIMIT 1", (run_id,)
        ).fetchone()
        rows = []
        for index in range(5000):
            row = dict(zip(columns, template, strict=True))
            row.update(id=f"chain-{index}", parent_step_id=f"chain-{index - 1}" if index else None)
            rows.append(tuple(row[c] for c in columns))
        marks = ", ".join("?" * len(columns))
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO steps VALUES ({marks})", rows)
        conn.execute("COMMIT")

    def mixed_id_types(conn):
        without_constraints(conn, "steps")
        conn.execute("UPDATE steps SET id = 7 WHERE rowid = 1")
        conn.execute("UPDATE steps SET id = '7' WHERE rowid = 2")

    def long_ids(conn):
        conn.execute("UPDATE runs SET id = id || printf('%.*c', 300, 'x') WHERE rowid = 1")
        conn.execute("UPDATE steps SET id = id || printf('%.*c', 300, 'y') WHERE rowid <= 3")

    def similar_long_ids(conn):
        without_constraints(conn, "runs")
        conn.execute("UPDATE runs SET id = printf('%.*c', 300, 'z') || rowid")

    def step_ids_alike(conn):
        without_constraints(conn, "steps")
        conn.execute("UPDATE steps SET id = printf('%.*c', 300, 'q') || rowid")

    mutations = {
        "self-parent": self_parent,
        "parent-cycle-a-b-a": two_cycle,
        "every-step-in-one-cycle": every_step_in_one_cycle,
        "parent-missing": parent_missing,
        "parent-in-other-run": parent_in_other_run,
        "orphan-calls": orphan_calls,
        "orphan-links": orphan_links,
        "steps-of-missing-run": orphan_steps,
        "duplicate-step-rows": duplicate_rows("steps"),
        "duplicate-step-ids-other-content": duplicate_rows(
            "steps",
            "UPDATE steps SET status = 'failed' WHERE rowid > (SELECT count(*) / 2 FROM steps)",
        ),
        "duplicate-run-rows": duplicate_rows("runs"),
        "duplicate-run-ids-other-content": duplicate_rows(
            "runs",
            "UPDATE runs SET status = 'failed' WHERE rowid > (SELECT count(*) / 2 FROM runs)",
        ),
        "duplicate-call-rows": duplicate_rows("calls"),
        "duplicate-link-rows": duplicate_rows("step_links"),
        "null-run-ids": null_run_ids,
        "standalone-step-id-equals-run-id": standalone_named_like_run,
        "parent-chain-5000-deep": deep_chain,
        "integer-and-text-step-id": mixed_id_types,
        "ids-over-255-chars": long_ids,
        "run-ids-alike-for-255-chars": similar_long_ids,
        "step-ids-alike-for-255-chars": step_ids_alike,
    }
    for detail, mutate in mutations.items():
        corpus.add_sqlite("ids", runs, detail, mutate, PARTIAL)

    workflow = by_label["workflow-db"]
    workflow_mutations = {
        "duplicate-execution-rows": duplicate_rows("workflow_executions"),
        "duplicate-step-rows": duplicate_rows("execution_steps"),
        "duplicate-log-rows": duplicate_rows("execution_logs"),
        "step-id-compensation": lambda conn: conn.execute(
            "UPDATE execution_steps SET id = 'compensation' WHERE rowid = 1"
        ),
        "steps-of-missing-execution": lambda conn: conn.execute(
            "UPDATE execution_steps SET execution_id = 'no-such-execution' WHERE rowid % 3 = 0"
        ),
        "logs-of-missing-execution": lambda conn: conn.execute(
            "UPDATE execution_logs SET execution_id = 'no-such-execution' WHERE rowid % 3 = 0"
        ),
        "null-execution-ids": lambda conn: (
            without_constraints(conn, "workflow_executions"),
            conn.execute("UPDATE workflow_executions SET id = NULL WHERE rowid <= 2"),
        ),
        "execution-id-over-255-chars": lambda conn: (
            conn.execute(
                "UPDATE execution_steps "
                "SET execution_id = execution_id || printf('%.*c', 300, 'x') "
                "WHERE execution_id = (SELECT id FROM workflow_executions ORDER BY rowid LIMIT 1)"
            ),
            conn.execute(
                "UPDATE workflow_executions SET id = id || printf('%.*c', 300, 'x') WHERE rowid = 1"
            ),
        ),
    }
    for detail, mutate in workflow_mutations.items():
        corpus.add_sqlite("ids", workflow, detail, mutate, PARTIAL)
    events = by_label["workflow-events"]
    events_mutations = {
        "duplicate-event-rows": duplicate_rows("execution_events"),
        "events-of-missing-execution": lambda conn: conn.execute(
            "UPDATE execution_events SET execution_id = 'no-such-execution-' || rowid "
            "WHERE rowid % 3 = 0"
        ),
    }
    for detail, mutate in events_mutations.items():
        corpus.add_sqlite("ids", events, detail, mutate, PARTIAL)

    duck = next(s for s in trace_samples(samples) if s.format == "duckflux" and s.kind == "sqlite")
    duck_mutations = {
        "duplicate-execution-rows": (duplicate_rows("executions"), EITHER),
        "duplicate-seq": (
            lambda conn: conn.execute("UPDATE steps SET seq = 1 WHERE rowid <= 2"),
            ERROR,
        ),
        "steps-of-missing-execution": (
            lambda conn: conn.execute(
                "UPDATE steps SET execution_id = 'other' WHERE rowid % 2 = 0"
            ),
            PARTIAL,
        ),
    }
    for detail, (mutate, expect) in duck_mutations.items():
        corpus.add_sqlite("ids", duck, detail, mutate, expect)
    duck_json = next(
        s for s in trace_samples(samples) if s.format == "duckflux" and s.kind == "json"
    )
    document = load_json(duck_json)
    twice = replaced(document, ("steps",), document["steps"] + document["steps"][:1])
    corpus.add("ids", duck_json, "duplicate-step", dump_json(duck_json, twice), ERROR)


# --- 10. traceos state machine --------------------------------------------------------------


def traceos_cases(samples: Path, corpus: Corpus) -> None:
    """traceos dumps that break the tracer's state machine: each is flagged on the
    run, never crashed on (the real tracer would have refused the calls)."""
    sample = next(s for s in trace_samples(samples) if s.kind == "jsonl")
    records = load_json(sample)
    by_trace: dict[str, list[dict]] = {}
    for record in records:
        by_trace.setdefault(record["trace_id"], []).append(record)
    # The longest trace whose steps all exit: enter/exit pairs, nesting.
    trace = max(
        (r for r in by_trace.values() if all(x.get("status") != "error" for x in r)),
        key=len,
    )
    env, steps = trace[0], trace[1:]
    other = next(r for r in by_trace.values() if r is not trace)

    def renumber(items: list[dict]) -> list[dict]:
        out = []
        for index, item in enumerate(items, 1):
            item = dict(item)
            item["step_id"] = index
            out.append(item)
        return out

    first_exit = next(i for i, s in enumerate(steps) if s["status"] == "exit")
    enter_of_first_exit = next(
        i for i, s in enumerate(steps) if s["node"] == steps[first_exit]["node"]
    )
    variants: dict[str, list[dict]] = {
        "exit-before-enter": [env, *renumber(
            [steps[first_exit], *steps[:first_exit], *steps[first_exit + 1 :]]
        )],
        "exit-without-enter": [env, *renumber(
            steps[:enter_of_first_exit] + steps[enter_of_first_exit + 1 :]
        )],
        "double-enter": [env, *renumber([steps[0], steps[0], *steps[1:]])],
        "double-exit": [env, *renumber(
            [*steps[: first_exit + 1], steps[first_exit], *steps[first_exit + 1 :]]
        )],
        "error-then-more-steps": [env, *renumber(
            [*steps[:first_exit], {**steps[first_exit], "status": "error", "meta": "boom"},
             *steps[first_exit + 1 :]]
        )],
        "error-twice": [env, *renumber(
            [*steps[:first_exit], {**steps[first_exit], "status": "error"},
             {**steps[first_exit], "status": "error"}]
        )],
        "step-id-gap": [env, *steps[:2], *({**s, "step_id": s["step_id"] + 10} for s in steps[2:])],
        "step-id-starts-at-0": [env, *({**s, "step_id": s["step_id"] - 1} for s in steps)],
        "step-ids-reversed": [env, *reversed(steps)],
        "duplicate-step-same-content": [env, *steps, steps[1]],
        "duplicate-step-other-content": [env, *steps, {**steps[1], "node": "impostor"}],
        "duplicate-env-other-content": [env, *steps, {**env, "source": "other"}],
        "env-after-steps": [*steps, env],
        "no-env": list(steps),
        "only-env": [env],
        "unknown-type": [env, *steps[:2], {**steps[2], "type": "banana"}, *steps[3:]],
        "unknown-status": [env, *steps[:2], {**steps[2], "status": "paused"}, *steps[3:]],
        "interleaved-with-other-trace": [
            x for pair in zip(trace, other, strict=False) for x in pair
        ],
        "step-env-id-mismatch": [env, {**steps[0], "env_id": "env_other"}, *steps[1:]],
        "node-not-a-string": [env, {**steps[0], "node": 42}, *steps[1:]],
        "node-empty": [env, {**steps[0], "node": ""}, {**steps[1], "node": ""}, *steps[2:]],
        "trace-id-empty": [env, {**steps[0], "trace_id": ""}, *steps[1:]],
        "all-open-no-exit": [env, *renumber([s for s in steps if s["status"] == "enter"])],
        "same-at-everywhere": [env, *({**s, "at": env["ts"]} for s in steps)],
    }  # fmt: skip
    for field_name in ("type", "trace_id", "env_id", "step_id", "at", "node", "status"):
        variants[f"step-without-{field_name}"] = [
            env, *steps[:1], {k: v for k, v in steps[1].items() if k != field_name}, *steps[2:]
        ]  # fmt: skip
    for field_name in ("type", "env_id", "trace_id", "ts", "source", "payload"):
        variants[f"env-without-{field_name}"] = [
            {k: v for k, v in env.items() if k != field_name},
            *steps,
        ]
    for label, value in (
        ("string", "3"),
        ("float", 3.0),
        ("negative", -1),
        ("huge", 2**70),
        ("bool", True),
    ):
        variants[f"step-id-{label}"] = [env, *steps[:2], {**steps[2], "step_id": value}, *steps[3:]]
    for detail, items in variants.items():
        corpus.add("traceos-state", sample, detail, dump_json(sample, items), PARTIAL)
    array = next(s for s in trace_samples(samples) if s.format == "traceos" and s.kind == "json")
    for detail in ("exit-before-enter", "error-then-more-steps", "duplicate-step-other-content"):
        corpus.add("traceos-state", array, detail, dump_json(array, variants[detail]), PARTIAL)
    # A dump whose every record is unusable.
    corpus.add(
        "traceos-state", sample, "no-usable-record", b'{"type":"env"}\n{"type":"step"}\n', ERROR
    )
    corpus.add("traceos-state", array, "array-of-non-objects", b'[1, "two", null, [3]]', ERROR)


# --- 11. zip archives -----------------------------------------------------------------------


def _zip_bytes(members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are the point
        for info, data in members:
            archive.writestr(info, data)
    return buffer.getvalue()


def _member(name: str, mode: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    if mode is not None:
        info.external_attr = mode << 16
        info.create_system = 3  # unix
    return info


def zip_cases(samples: Path, corpus: Corpus) -> None:
    """Hostile archives, each with one good trace beside the bad member."""
    good_sample = next(
        s for s in trace_samples(samples) if s.format == "duckflux" and s.kind == "json"
    )
    good = (good_sample.path.name, good_sample.path.read_bytes())
    noise = hashlib.sha256(b"corpus").digest() * (700 * 1024 // 32)  # incompressible-ish
    noise = bytes(b ^ (i * 131 % 251) for i, b in enumerate(noise))
    nested = _zip_bytes([good])
    plain: dict[str, tuple[list, str, tuple]] = {
        "bomb": ([good, (_member("bomb.json"), b"0" * (3 * 1024 * 1024))], ERROR, BOMB_PATCHES),
        "over-total-budget": (
            [good, (_member("a.bin"), noise), (_member("b.bin"), noise)],
            ERROR,
            BUDGET_PATCHES,
        ),
        "too-many-members": (
            [good, *((_member(f"extra-{i}.txt"), b"x") for i in range(4))],
            ERROR,
            MEMBERS_PATCHES,
        ),
        "dot-dot-member": ([good, (_member("../escaped.json"), good[1])], ERROR, ()),
        "deep-dot-dot-member": ([good, (_member("a/b/../../../escaped.json"), good[1])], ERROR, ()),
        "absolute-member": (
            [good, (_member("/tmp/tracer-corpus-absolute.json"), good[1])],
            ERROR,
            (),
        ),
        "windows-drive-member": ([good, (_member("C:/escaped.json"), good[1])], ERROR, ()),
        "backslash-dot-dot-member": ([good, (_member("..\\escaped.json"), good[1])], ERROR, ()),
        "symlink-member": (
            [good, (_member("link.json", stat.S_IFLNK | 0o777), b"/etc/passwd")],
            ERROR,
            (),
        ),
        "device-member": ([good, (_member("dev.json", stat.S_IFCHR | 0o666), b"")], ERROR, ()),
        "fifo-member": ([good, (_member("fifo.json", stat.S_IFIFO | 0o666), b"")], ERROR, ()),
        "nested-zip": ([good, (_member("inner.zip"), nested)], EITHER, ()),
        "member-name-component-300-chars": (
            [good, (_member("d/" + "n" * 300 + ".json"), good[1])],
            ERROR,
            (),
        ),
        "member-path-3000-chars": (
            [good, (_member("/".join(["p" * 200] * 15) + "/trace.json"), good[1])],
            EITHER,
            (),
        ),
        "file-then-directory-same-name": (
            [good, (_member("clash"), b"x"), (_member("clash/inner.json"), good[1])],
            EITHER,
            (),
        ),
        "duplicate-member-names": (
            [good, (_member("twice.json"), b"{}"), (_member("twice.json"), good[1])],
            EITHER,
            (),
        ),
        "only-directories": ([(_member("a/"), b""), (_member("a/b/"), b"")], ERROR, ()),
        "empty-archive": ([], ERROR, ()),
        "bad-member-trace": ([good, (_member("broken.json"), good[1][:-5])], ERROR, ()),
    }
    for detail, (members, expect, patches) in plain.items():

        def build(directory: Path, members=members) -> Path:
            path = directory / "upload.zip"
            path.write_bytes(_zip_bytes(members))
            return path

        corpus.add_path(
            "zip", "zip", detail, build, expect, source_format="duckflux", patches=patches
        )

    damaged = {
        "truncated-archive": lambda data: data[: len(data) // 2],
        "bad-crc": lambda data: _flip_in_member_data(data, "second.json"),
        "lying-sizes": lambda data: _lie_about_size(data, "second.json"),
        "encrypted-flag": lambda data: _set_flag(data, "second.json", 0x1),
        "invalid-utf8-name-with-utf8-flag": lambda data: _rename_raw(
            data, b"second.json", b"sec\xff\xfed.json", utf8_flag=True
        ),
        "zip-magic-then-garbage": lambda data: data[:4] + b"\x00" * 200,
        "unknown-compression-method": lambda data: _set_method(data, "second.json", 99),
    }
    second = [good, (_member("second.json"), good[1].replace(b"42462fed", b"52462fed"))]
    for detail, damage in damaged.items():

        def build(directory: Path, damage=damage) -> Path:
            path = directory / "upload.zip"
            path.write_bytes(damage(_zip_bytes(second)))
            return path

        corpus.add_path("zip", "zip", detail, build, EITHER, source_format="duckflux")

    def not_a_zip(directory: Path) -> Path:
        path = directory / "upload.zip"
        path.write_bytes(b"this is not a zip archive\n")
        return path

    corpus.add_path("zip", "zip", "text-named-zip", not_a_zip, ERROR)


def _local_header(data: bytes, name: bytes) -> int:
    offset = data.find(b"PK\x03\x04")
    while offset >= 0:
        length = int.from_bytes(data[offset + 26 : offset + 28], "little")
        if data[offset + 30 : offset + 30 + length] == name:
            return offset
        offset = data.find(b"PK\x03\x04", offset + 4)
    raise ValueError(name)


def _central_header(data: bytes, name: bytes) -> int:
    offset = data.find(b"PK\x01\x02")
    while offset >= 0:
        length = int.from_bytes(data[offset + 28 : offset + 30], "little")
        if data[offset + 46 : offset + 46 + length] == name:
            return offset
        offset = data.find(b"PK\x01\x02", offset + 4)
    raise ValueError(name)


def _flip_in_member_data(data: bytes, name: str) -> bytes:
    start = _local_header(data, name.encode())
    body = start + 30 + len(name) + int.from_bytes(data[start + 28 : start + 30], "little")
    out = bytearray(data)
    out[body + 10] ^= 0xFF
    return bytes(out)


def _lie_about_size(data: bytes, name: str) -> bytes:
    out = bytearray(data)
    for offset, field in (
        (_local_header(data, name.encode()), 22),
        (_central_header(data, name.encode()), 24),
    ):
        out[offset + field : offset + field + 4] = (10).to_bytes(4, "little")
    return bytes(out)


def _set_flag(data: bytes, name: str | bytes, flag: int) -> bytes:
    raw = name.encode() if isinstance(name, str) else name
    out = bytearray(data)
    for offset, field in ((_local_header(data, raw), 6), (_central_header(data, raw), 8)):
        value = int.from_bytes(out[offset + field : offset + field + 2], "little") | flag
        out[offset + field : offset + field + 2] = value.to_bytes(2, "little")
    return bytes(out)


def _set_method(data: bytes, name: str, method: int) -> bytes:
    out = bytearray(data)
    raw = name.encode()
    for offset, field in ((_local_header(data, raw), 8), (_central_header(data, raw), 10)):
        out[offset + field : offset + field + 2] = method.to_bytes(2, "little")
    return bytes(out)


def _rename_raw(data: bytes, old: bytes, new: bytes, *, utf8_flag: bool) -> bytes:
    assert len(old) == len(new)
    out = data.replace(old, new)
    return _set_flag(out, new, 0x800) if utf8_flag else out


# --- 12. trace directories ------------------------------------------------------------------


def directory_cases(samples: Path, corpus: Corpus) -> None:
    """Trace directories with symlink loops, FIFOs, devices and undecodable names,
    each beside a good trace that must still be ingested."""
    good = next(s for s in trace_samples(samples) if s.format == "duckflux" and s.kind == "json")

    def with_good(make: Callable[[Path], None]) -> Callable[[Path], Path]:
        def build(directory: Path) -> Path:
            root = directory / "traces"
            root.mkdir()
            shutil.copyfile(good.path, root / good.path.name)
            make(root)
            return root

        return build

    def fifo(root: Path) -> None:
        os.mkfifo(root / "waiting.json")

    def link_to_fifo(root: Path) -> None:
        os.mkfifo(root.parent / "outside.fifo")
        (root / "trace.json").symlink_to(root.parent / "outside.fifo")

    makers: dict[str, tuple[Callable[[Path], None], str]] = {
        "symlink-loop-a-link-to-parent": (
            lambda root: ((root / "a").mkdir(), (root / "a" / "link").symlink_to(".."))[-1],
            EITHER,
        ),
        "symlink-loop-self": (lambda root: (root / "self.json").symlink_to("self.json"), ERROR),
        "symlink-loop-pair": (
            lambda root: (
                (root / "x.json").symlink_to("y.json"), (root / "y.json").symlink_to("x.json")
            ),
            ERROR,
        ),
        "fifo": (fifo, ERROR),
        "symlink-to-fifo": (link_to_fifo, ERROR),
        "symlink-to-dev-zero": (lambda root: (root / "zero.json").symlink_to("/dev/zero"), ERROR),
        "symlink-to-dev-null": (lambda root: (root / "null.db").symlink_to("/dev/null"), ERROR),
        "dangling-symlink": (lambda root: (root / "gone.json").symlink_to("no-such-file"), ERROR),
        "symlink-to-directory-outside": (
            lambda root: (root / "etc").symlink_to("/etc"), EITHER
        ),
        "undecodable-file-name": (
            lambda root: _write_raw_name(
                root, b"trace-\xff\xfe.json", _renamed_run(good.path.read_bytes())
            ),
            EITHER,
        ),
        "zip-inside-directory": (
            lambda root: (root / "inner.zip").write_bytes(_zip_bytes([(good.path.name, b"{}")])),
            EITHER,
        ),
    }  # fmt: skip
    for detail, (make, expect) in makers.items():
        corpus.add_path(
            "directories", "dir", detail, with_good(make), expect, source_format="duckflux"
        )

    def explicit_fifo(directory: Path) -> Path:
        path = directory / "named.json"
        os.mkfifo(path)
        return path

    def explicit_zero(directory: Path) -> Path:
        path = directory / "trace.json"
        path.symlink_to("/dev/zero")
        return path

    def explicit_loop(directory: Path) -> Path:
        path = directory / "loop.json"
        path.symlink_to("loop.json")
        return path

    def explicit_missing(directory: Path) -> Path:
        return directory / "does-not-exist.json"

    explicit = {
        "named-fifo": explicit_fifo,
        "named-link-to-dev-zero": explicit_zero,
        "named-symlink-loop": explicit_loop,
        "named-missing-file": explicit_missing,
    }
    for detail, build in explicit.items():
        corpus.add_path("directories", "named", detail, build, ERROR)


def _write_raw_name(root: Path, name: bytes, data: bytes) -> None:
    with open(os.path.join(os.fsencode(root), name), "wb") as handle:
        handle.write(data)


def _renamed_run(data: bytes) -> bytes:
    """A duckflux trace given another execution id, so it is a run of its own."""
    document = json.loads(data)
    old = document["execution"]["id"]
    return data.replace(old.encode(), b"0badf11e" + old[8:].encode())


# --- 13. OTLP: ids, trees, values ------------------------------------------------------------

OTLP_TRACE = "5b8efff798038103d269b633813fc60c"
OTLP_ROOT = "eee19b7ec3c1b174"
OTLP_SPANS = 20_000  # a chain this deep, spans parented one under the next
OTLP_HUGE_CHARS = 5 * 1024 * 1024
OTLP_MANY = 50_000  # attributes on one span, events on one span, values in one array


def _span(span_id: str, parent: str = "", name: str = "s", **fields: Any) -> dict:
    span = {"traceId": OTLP_TRACE, "spanId": span_id, "name": name, "kind": 1,
            "startTimeUnixNano": "1772442000000000000",
            "endTimeUnixNano": "1772442000100000000", **fields}  # fmt: skip
    if parent:
        span["parentSpanId"] = parent
    return span


def _request(spans: list[dict]) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": []},
                "scopeSpans": [{"scope": {"name": "hostile"}, "spans": spans}],
            }
        ]
    }


def _nested_kvlist(depth: int) -> dict:
    value: dict = {"stringValue": "bottom"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


def _hex_id(n: int) -> str:
    return f"{n + 1:016x}"


def otlp_cases(samples: Path, corpus: Corpus) -> None:
    """OTLP/JSON the generic families cannot write: bad trace and span ids, span trees
    broken (cycles, self parents, duplicates, orphans, a 20,000-deep chain), huge and
    nested attribute values, numbers out of range, markup and escapes in every text."""
    sample = next(s for s in trace_samples(samples) if s.format == "otlp" and s.kind == "json")
    document = load_json(sample)
    span_path = _FIRST_SPAN

    def put(detail: str, value: Any, *fields: str, expect: str = EITHER) -> None:
        changed = replaced(document, (*span_path, *fields), value) if fields else value
        corpus.add("otlp", sample, detail, dump_json(sample, changed), expect)

    # Ids: not hex, the wrong width, base64 (OTLP/JSON's ids are hex), all zeros, absent.
    for field in ("traceId", "spanId", "parentSpanId"):
        for label, value in {
            "not-hex": "zz" * 8, "short": "abcd", "long": "ab" * 40, "base64": "AAAAAAAAAAA=",
            "upper-hex": "EEE19B7EC3C1B174", "empty": "", "number": 12345,
            "zeros": "0" * (32 if field == "traceId" else 16), "markup": "<script>x</script>",
        }.items():  # fmt: skip
            put(f"{field}={label}", value, field)
    # Trees: a span its own parent, two spans each other's, one id twice, parents missing.
    spans = [_span("a" * 16, "b" * 16, "A"), _span("b" * 16, "a" * 16, "B")]
    corpus.add("otlp", sample, "cycle-of-two", dump_json(sample, _request(spans)), EITHER)
    spans = [_span("a" * 16, "a" * 16, "self")]
    corpus.add("otlp", sample, "self-parent", dump_json(sample, _request(spans)), EITHER)
    spans = [_span("a" * 16, "", "root"), _span("b" * 16, "a" * 16, "x"),
             _span("b" * 16, "a" * 16, "x again"), _span("c" * 16, "d" * 16, "orphan")]  # fmt: skip
    corpus.add("otlp", sample, "duplicate-and-orphan", dump_json(sample, _request(spans)), PARTIAL)
    chain = [
        _span(_hex_id(i), _hex_id(i - 1) if i else "", f"level {i}") for i in range(OTLP_SPANS)
    ]
    corpus.add("otlp", sample, f"chain-{OTLP_SPANS}", dump_json(sample, _request(chain)), PARTIAL)
    spans = [_span(_hex_id(i), _hex_id((i + 1) % 1000), f"ring {i}") for i in range(1000)]
    corpus.add("otlp", sample, "ring-of-1000", dump_json(sample, _request(spans)), EITHER)
    # Values: huge, many, nested past protobuf's recursion limit, numbers out of range.
    big = {"key": "big", "value": {"stringValue": "x" * OTLP_HUGE_CHARS}}
    put("attribute-5mb", [big], "attributes")
    put("attribute-key-5mb", [{"key": "k" * OTLP_HUGE_CHARS, "value": {"intValue": "1"}}],
        "attributes")  # fmt: skip
    many = [{"key": f"k{i}", "value": {"intValue": str(i)}} for i in range(OTLP_MANY)]
    put(f"attributes-{OTLP_MANY}", many, "attributes")
    events = [{"timeUnixNano": "1772442000000000001", "name": f"e{i}"} for i in range(OTLP_MANY)]
    put(f"events-{OTLP_MANY}", events, "events")
    array = {"arrayValue": {"values": [{"intValue": str(i)} for i in range(OTLP_MANY)]}}
    put(f"array-{OTLP_MANY}", [{"key": "a", "value": array}], "attributes")
    for depth in (50, 99, 101, 200):  # 4 JSON levels each: 800 at most
        put(f"kvlist-depth-{depth}", [{"key": "n", "value": _nested_kvlist(depth)}], "attributes")
    for label, value in {
        "int-2-pow-70": {"intValue": str(2**70)}, "int-minus-2-pow-70": {"intValue": str(-(2**70))},
        "int-text": {"intValue": "twelve"}, "int-float": {"intValue": "1.5"},
        "double-nan": {"doubleValue": "NaN"}, "double-inf": {"doubleValue": "Infinity"},
        "double-minus-inf": {"doubleValue": "-Infinity"}, "double-1e308": {"doubleValue": 1e308},
        "double-text": {"doubleValue": "x"}, "bytes-not-base64": {"bytesValue": "!!"},
        "two-kinds": {"stringValue": "a", "intValue": "1"}, "empty": {},
    }.items():  # fmt: skip
        put(f"value-{label}", [{"key": "v", "value": value}], "attributes")
    for label, value in {"u64-max": str(2**64 - 1), "past-u64": str(2**64), "minus-1": "-1",
                         "1e30": "1e30", "float": 1.5e18, "text": "soon"}.items():  # fmt: skip
        put(f"startTimeUnixNano={label}", value, "startTimeUnixNano")
        put(f"event-time={label}", [{"timeUnixNano": value, "name": "e"}], "events")
    put("end-before-start", "1", "endTimeUnixNano")
    for field, value in (
        ("kind", 999),
        ("kind", -1),
        ("status", {"code": 99}),
        ("status", {"code": 2, "message": "m" * OTLP_HUGE_CHARS}),
        ("droppedAttributesCount", -1),
        ("droppedEventsCount", 2**40),
    ):
        put(f"{field}={_safe(str(value))[:20]}", value, field)
    # Text: markup, bidi overrides, escaped NUL and lone surrogates, in every text field.
    for label, text in {
        "markup": '<script>window.__pwned=1</script><img src=x onerror="x()">',
        "bidi": "\u202etxt.exe", "nul": "a\x00b", "lone-surrogate": "a\ud800b",
        "line-breaks": "a\nb\rc\u2028d",
    }.items():  # fmt: skip
        data = json.dumps(
            _request(
                [
                    _span(
                        "a" * 16,
                        "",
                        text,
                        attributes=[{"key": text, "value": {"stringValue": text}}],
                        events=[{"timeUnixNano": "1772442000000000001", "name": text}],
                        status={"code": 2, "message": text},
                    )
                ]
            ),
            ensure_ascii=True,
        ).encode()
        # orjson refuses an escaped lone surrogate (no Collector writes one): a named error.
        expect = EITHER if label == "lone-surrogate" else PARTIAL
        corpus.add("otlp", sample, f"text-{label}", data, expect)
    # Invalid UTF-8 where a reader looks first: an attribute key and a span id.
    raw = json.dumps(_request([_span("a" * 16, "", "ok")])).encode()
    corpus.add("otlp", sample, "bytes-in-name", raw.replace(b'"ok"', b'"o\xffk"'), EITHER)
    corpus.add("otlp", sample, "bytes-in-id", raw.replace(b'"' + b"a" * 16, b'"\xff' + b"a" * 15),
               EITHER)  # fmt: skip
    # JSON lines: a good line, then hostile ones (one trace over several lines).
    lines = [json.dumps(_request([_span("a" * 16, "", "root")])),
             json.dumps(_request([_span("b" * 16, "a" * 16, "child", traceId="zz")])),
             "[]", "null", "{}", json.dumps({"resourceSpans": {}})]  # fmt: skip
    corpus.add("otlp", sample, "jsonl-bad-lines", "\n".join(lines).encode(), EITHER,
               filename="collector.jsonl")  # fmt: skip


# --- all of it ------------------------------------------------------------------------------

FAMILIES: dict[str, Callable[[Path, Corpus], None]] = {
    "truncated": truncation_cases,
    "wrong-type": wrong_type_cases,
    "nan-infinity": nan_cases,
    "utf8-nul": utf8_nul_cases,
    "deep-nesting": nesting_cases,
    "timestamps": timestamp_cases,
    "sqlite-structure": sqlite_structure_cases,
    "ids": id_cases,
    "traceos-state": traceos_cases,
    "zip": zip_cases,
    "directories": directory_cases,
    "otlp": otlp_cases,
}


def build_corpus(samples: Path, root: Path) -> list[Case]:
    """Write every family's cases under `root` (which must exist and be empty)."""
    corpus = Corpus(root)
    for generate in FAMILIES.values():
        generate(samples, corpus)
    return corpus.cases


def generate(family: str, samples: Path, root: Path) -> list[Case]:
    """Write one family's cases under `root` (a name of FAMILIES)."""
    corpus = Corpus(root)
    FAMILIES[family](samples, corpus)
    return corpus.cases
