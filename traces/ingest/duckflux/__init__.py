"""duckflux traces (runtime-js 0.7.x; FORMATS.md §1 and §6). No Django here.

One file holds one root execution, in one of three encodings of one logical
model: `<id>.json` (rewritten whole after every step; `json_file`), `<id>.txt`
(a header, then one block appended per finished step; `txt_file`) and
`<id>.sqlite` (tables `executions` and `steps`; `sqlite_file`). Each encoding
is first read into that model (an execution dict and step dicts with the JSON
key names); one shared code path (`model`) then turns the model into records.

A step is written when it ends, so files list steps in completion order, and
there is no parent pointer: nesting is inferred from `seq`, times, completion
order and `loopIndex` (`nesting.infer_parents`). Steps are yielded in `seq`
(start) order, which puts every container before its children.

Reading happens in two passes: the first validates every step and keeps only
what nesting needs; the second, lazy one (the run's `steps`) reads the steps
again in `seq` order. The run's `steps` must therefore be consumed before the
`parse()` generator is advanced or closed (the store does exactly that): the
SQLite snapshot and the spill file of a streamed JSON live until then.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..common import read_head
from ..records import ParseError, RunRecord
from ..sqlite_layout import is_sqlite
from . import json_file, sqlite_file, txt_file
from .model import NAME, PARSER_VERSION, RETRY_HINT


def sniff(path: Path, head: bytes) -> bool:
    if is_sqlite(head):
        return sqlite_file.sniff(Path(path))
    return txt_file.sniff(head) or json_file.sniff(Path(path), head)


def parsed_whole(path: Path, head: bytes, size: int) -> bool:
    """Whether `parse(path)` reads the file (`size` bytes, starting with `head`)
    whole into memory, so its records may be kept after the generator is done
    (the loader reads small files ahead): not for a SQLite database (its
    snapshot closes) or a JSON file streamed."""
    return not is_sqlite(head) and size <= json_file.STREAM_THRESHOLD_BYTES


def parse(path: Path) -> Iterator[RunRecord]:
    path = Path(path)
    head = read_head(path, 4096)
    if is_sqlite(head):
        yield from sqlite_file.parse(path)
    elif not head.strip():
        raise ParseError(f"empty file ({RETRY_HINT})")
    elif head.lstrip()[:1] in (b"{", b"["):
        yield from json_file.parse(path)
    elif head.startswith(b"# execution"):
        yield from txt_file.parse(path)
    else:
        raise ParseError(
            "not a duckflux trace: expected a JSON object, a '# execution' header "
            "or a SQLite database"
        )


__all__ = ["NAME", "PARSER_VERSION", "RETRY_HINT", "parse", "parsed_whole", "sniff"]
