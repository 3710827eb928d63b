"""A step's path: the names along its run's tree, from its root down to it, with
loop indexes and repeat numbers. Two runs of one type are compared by it
(queries/compare.py): the same path in both is the same step, so each run's
steps are read in path order from an index on (run, path) and merged, with no
lookups of one run in the other.

Stored (Step.path) as one string that sorts as the tree reads, compared code
point by code point (SQLite's BINARY, PostgreSQL's "C" collation, Python's str):

- components are joined by SEP, which sorts before every character a name
  can hold, so a step's descendants come right after it and before its next
  sibling;
- a step of a loop iteration (a loop index its parent does not have) starts
  with LOOP, its index in ten digits, LOOP: the iterations follow each other in
  order, each with its steps;
- the second and later siblings of one component get OCC and their number in
  ten digits (`fetch`, `fetch␂0000000002`, ...).

Names are cut at NAME_MAX characters and a path longer than PATH_MAX (very deep
trees) keeps its start and a hash of the whole: it stays unique and stable
across runs, and fits any index entry. No Django here: the store and the
migration that fills older rows both use it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

SEP = "\x01"
OCC = "\x02"
LOOP = "\x03"
HASHED = "\x04"
NAME_MAX = 100
PATH_MAX = 600
_KEEP = PATH_MAX - 34
_MARKS = re.compile("[\x00-\x04]")
_COMPONENT = re.compile(f"^(?:{LOOP}(-?\\d+){LOOP})?(.*?)(?:{OCC}(\\d+))?$", re.DOTALL)


def component(name: str, loop_index: int | None = None) -> str:
    """A step's own part of its path, before any repeat number."""
    base = _MARKS.sub("\ufffd", name if isinstance(name, str) else str(name or ""))[:NAME_MAX]
    if not isinstance(loop_index, int) or isinstance(loop_index, bool):
        return base
    digits = f"{loop_index:010d}" if loop_index >= 0 else f"-{-loop_index:09d}"
    return f"{LOOP}{digits}{LOOP}{base}"


def fit(path: str) -> str:
    if len(path) <= PATH_MAX:
        return path
    digest = hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{path[:_KEEP]}{HASHED}{digest}"


class StepPaths:
    """The paths of one run's steps, given parents before children (the store's order)."""

    def __init__(self):
        self.paths: dict[int, str] = {}
        self.loops: dict[int, int | None] = {}
        self.seen: Counter = Counter()

    def add(self, step_id: int, parent_id: int | None, name: str, loop_index: int | None) -> str:
        parent_loop = self.loops.get(parent_id) if parent_id is not None else None
        own_loop = loop_index if loop_index is not None and loop_index != parent_loop else None
        part = component(name, own_loop)
        self.seen[parent_id, part] += 1
        count = self.seen[parent_id, part]
        if count > 1:
            part = f"{part}{OCC}{count:010d}"
        parent_path = self.paths.get(parent_id) if parent_id is not None else None
        path = fit(part if parent_path is None else f"{parent_path}{SEP}{part}")
        self.paths[step_id] = path
        self.loops[step_id] = loop_index
        return path


def parts(path: str) -> list[dict]:
    """A stored path as its components: name, loop index (or None), repeat number (1 up)."""
    found = []
    for piece in path.split(SEP) if path else []:
        hashed = HASHED in piece
        piece = piece.split(HASHED)[0]
        match = _COMPONENT.match(piece)
        loop, name, repeat = match.groups() if match else (None, piece, None)
        found.append(
            {
                "name": name,
                "loop": int(loop) if loop is not None else None,
                "repeat": int(repeat) if repeat else 1,
                "cut": hashed,
            }
        )
    return found


def readable(path: str) -> str:
    """A stored path as a person reads it: `process [iteration 3] / upsert #2`."""
    return " / ".join(label(part) for part in parts(path))


def label(part: dict) -> str:
    text = part["name"] or "(no name)"
    if part["loop"] is not None:
        text = f"[{part['loop']}] {text}"
    if part["repeat"] > 1:
        text = f"{text} #{part['repeat']}"
    if part["cut"]:
        text = f"{text} …"
    return text
