"""The files an ingest reads: paths given, directories walked, zip archives
expanded, each with the logical path it is known by in TraceFile.path."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from traces.models import TraceFile

from .common import read_head

# Never trace data: journals, temp files of writers caught mid-rename, our own WAL files.
IGNORED_SUFFIXES = (".tmp", "-journal", "-wal", "-shm", ".part", ".swp")
ZIP_MAGIC = b"PK\x03\x04"
# TraceFile.path's length.
MAX_PATH = 2000


@dataclass
class Candidate:
    """A file to ingest: where it is on disk now, and what it is known as."""

    real_path: Path
    logical_path: str
    display_name: str
    explicit: bool
    error: str = ""
    # A zip member: its mtime is the archive's (to 1-2 s), too coarse to trust alone.
    archived: bool = False


def _collect(
    paths: Iterable[str | Path], stack: contextlib.ExitStack, display_names: dict[str, str]
) -> Iterator[Candidate]:
    for raw in paths:
        path = Path(raw).expanduser()
        name = storable(display_names.get(str(raw), str(raw)))
        if not path.exists() and not path.is_symlink():
            yield Candidate(path, _logical(path), name, True, error="no such file or directory")
        elif path.is_dir():
            yield from _walk(path)
        elif _is_zip(path):
            yield from _expand_zip(path, name, stack)
        else:
            yield Candidate(path, _logical(_resolved(path)), name, True)


def _walk(root: Path) -> Iterator[Candidate]:
    """Every regular file below root, sorted, without following directory
    symlinks (a link loop cannot trap us)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith(".") or filename.endswith(IGNORED_SUFFIXES):
                continue
            path = Path(dirpath) / filename
            if _is_zip(path):
                continue  # archives inside directories are not expanded; name them explicitly
            yield Candidate(path, _logical(_resolved(path)), storable(str(path)), explicit=False)


def _resolved(path: Path) -> str:
    """The absolute path with symlinks resolved, or without when they loop."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        return os.path.abspath(path)


def storable(text: str) -> str:
    """`text` as the database can store it: a file name with bytes that are not
    UTF-8 (decoded by Python as lone surrogates) gets them as `\\xff` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def logical_path(path: Path) -> str:
    """How a file on disk is known in TraceFile.path."""
    return _logical(_resolved(path))


def _logical(path: str) -> str:
    """A file's identity in TraceFile.path: storable, and at most MAX_PATH long
    (a zip member's path can be as long as the archive likes)."""
    text = storable(str(path))
    if len(text) > MAX_PATH:
        digest = hashlib.sha256(text.encode()).hexdigest()
        text = f"{text[: MAX_PATH - 80]}...{digest}"
    return text


def _is_zip(path: Path) -> bool:
    try:
        return path.is_file() and read_head(path, 4) == ZIP_MAGIC
    except OSError:
        return False


def _expand_zip(path: Path, name: str, stack: contextlib.ExitStack) -> Iterator[Candidate]:
    from .archives import ArchiveError, extract_zip

    tmpdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tracer-zip-")))
    archive_id = _resolved(path)
    try:
        members = extract_zip(path, tmpdir)
    except ArchiveError as exc:
        yield Candidate(path, _logical(archive_id), name, True, error=str(exc))
        return
    if not members:
        yield Candidate(path, _logical(archive_id), name, True, error="the archive holds no files")
    for member in members:
        logical, display = _logical(f"{archive_id}!/{member.name}"), f"{name}:{member.name}"
        if member.error:
            yield Candidate(path, logical, display, True, error=member.error)
            continue
        if Path(member.name).name.endswith(IGNORED_SUFFIXES):
            continue
        if _is_zip(member.path):
            error = "an archive inside the archive is not expanded; upload it on its own"
            yield Candidate(member.path, logical, display, True, error=error)
            continue
        yield Candidate(member.path, logical, display, explicit=False, archived=True)


def _known_files(logical_paths: Iterable[str]) -> dict[str, TraceFile]:
    paths = list(logical_paths)
    known: dict[str, TraceFile] = {}
    for start in range(0, len(paths), 500):
        for trace_file in TraceFile.objects.filter(path__in=paths[start : start + 500]):
            known[trace_file.path] = trace_file
    return known
