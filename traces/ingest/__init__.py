"""Trace formats: the registry and content sniffing. No Django here.

Each format module exports the same names:

- `NAME`: the format's name in the model (`duckflux`, `greentic`, ...);
- `sniff(path, head) -> bool`: whether the file is this format, judged by its
  content (`head` is its first 64 KiB); may raise `ParseError` for a file that
  clearly claims to be this format but is broken (e.g. a corrupt SQLite file
  with this format's tables);
- `parse(path) -> Iterator[RunRecord]`: the runs in the file.

Optionally `companion_of(path) -> Path | None` (a file that is read as part of
another, e.g. workflow's `events.db` beside `workflow.db`) and
`companion_paths(path) -> list[Path]` (the files read together with `path`,
whose changes count as changes of `path`), and `SNAPSHOT_READ = True` when each
run `parse()` yields is whole and final on its own (read from a snapshot, not
from a file that may be half-written), so the loader may commit a big file's
runs in batches before its last one is read; `parsed_whole(path, head, size)
-> bool` when `parse()` reads that file whole into memory, so that the loader may
parse small files ahead and write many of them together.

Writing to the database is `store.py`'s job; walking paths is `loader.py`'s.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from . import duckflux, greentic, otlp, runs, traceos, workflow
from .common import read_head
from .records import ParseError

FORMATS: dict[str, ModuleType] = {
    module.NAME: module for module in (duckflux, greentic, traceos, runs, workflow, otlp)
}


def detect(path: Path, head: bytes | None = None) -> ModuleType | None:
    """The format module that recognises `path` by content, or None."""
    if head is None:
        head = read_head(path)
    for module in FORMATS.values():
        if module.sniff(path, head):
            return module
    return None


def get_format(name: str) -> ModuleType:
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(FORMATS)
        raise ParseError(f"unknown format {name!r} (known: {known})") from None


__all__ = ["FORMATS", "ParseError", "detect", "get_format"]
