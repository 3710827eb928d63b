"""The files an ingest reads: paths given, directories walked, zip archives
expanded, each with the logical path it is known by in TraceFile.path."""

from __future__ import annotations

import contextlib
import hashlib
import operator
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import orjson
from django.db import connection

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

    # Where it is on disk now: `real_path`. A walk gives text, made a Path only
    # when the file is read (an unchanged rescan never needs one).
    location: str | Path
    logical_path: str
    display_name: str
    explicit: bool
    error: str = ""
    # A zip member: its mtime is the archive's (to 1-2 s), too coarse to trust alone.
    archived: bool = False
    # Its stat, taken by the walk that found it (a rescan stats each file once).
    info: os.stat_result | None = None
    # Its path with symlinks resolved, where already known (companions are found by it).
    resolved: str = ""
    # Found by a directory walk, whose archives are left out (judged by the loader
    # once its stat says it changed: reading every file's head would double a rescan).
    walked: bool = False

    @property
    def real_path(self) -> Path:
        if not isinstance(self.location, Path):
            self.location = Path(self.location)
        return self.location


def _collect(
    paths: Iterable[str | Path],
    stack: contextlib.ExitStack,
    display_names: dict[str, str],
    *,
    archives: bool = True,
) -> Iterator[Candidate]:
    """The candidates of `paths`: a directory's files, a zip archive's members (with
    `archives`; else the archive itself, which the loader leaves out as a walk's)."""
    for raw in paths:
        path = Path(raw).expanduser()
        name = storable(display_names.get(str(raw), str(raw)))
        if not path.exists() and not path.is_symlink():
            yield Candidate(path, _logical(path), name, True, error="no such file or directory")
        elif path.is_dir():
            yield from _walk(path)
        elif archives and is_zip(path):
            yield from _expand_zip(path, name, stack)
        else:
            resolved = _resolved(path)
            yield Candidate(path, _logical(resolved), name, True, resolved=resolved)


def _walk(root: Path) -> Iterator[Candidate]:
    """Every file below root that is not a directory, sorted, without following
    directory symlinks (a link loop cannot trap us)."""
    top = str(root)
    shown_from = 2 if top == "." else 0  # "./a.json" is shown as "a.json", as Path shows it
    for path, resolved, info in walk_files(top, _resolved(root)):
        resolved = resolved or _resolved(Path(path))
        yield Candidate(
            path, _logical(resolved), storable(path[shown_from:]), False,
            info=info, resolved=resolved, walked=True,
        )  # fmt: skip


def walk_files(
    directory: str, real: str, on_directory_link: Callable[[Path], None] | None = None
) -> Iterator[tuple[str, str, os.stat_result | None]]:
    """(path, real path, stat) of each entry below `directory` that is not a
    directory (hidden names and IGNORED_SUFFIXES left out), sorted, a directory's
    files before its sub-directories, which are entered unless they are links (those
    go to `on_directory_link`).

    `real` is the directory's resolved path, so an entry that is not a symlink is
    `real` / its name: only symlinks are left to resolve (their real path is "").
    The stat follows links; it is None when it fails (a broken link). Paths are
    text: a Path per file would cost a tenth of an unchanged rescan."""
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=_name)
    except OSError:  # gone or unreadable meanwhile: os.walk skips it too
        return
    prefix = os.path.join(real, "")
    below = []
    for entry in entries:  # the loop of a rescan, per file: kept tight
        name = entry.name
        if name[0] == ".":
            continue
        try:
            directory_entry = entry.is_dir()
        except OSError:
            directory_entry = False
        if directory_entry:
            if not entry.is_symlink():
                below.append(name)
            elif on_directory_link is not None:
                on_directory_link(Path(entry.path))
            continue
        if name.endswith(IGNORED_SUFFIXES):
            continue
        try:
            info = entry.stat()
        except OSError:
            info = None
        yield entry.path, "" if entry.is_symlink() else prefix + name, info
    for name in below:
        yield from walk_files(os.path.join(directory, name), prefix + name, on_directory_link)


_name = operator.attrgetter("name")


def _resolved(path: Path) -> str:
    """The absolute path with symlinks resolved, or without when they loop."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        return os.path.abspath(path)


def storable(text: str) -> str:
    """`text` as the database can store it: a file name with bytes that are not
    UTF-8 (decoded by Python as lone surrogates) gets them as `\\xff` escapes."""
    if text.isascii():  # nearly every path, and a constant-time test
        return text
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


def is_zip(path: Path, info: os.stat_result | None = None) -> bool:
    try:
        info = info or path.stat()
        return stat.S_ISREG(info.st_mode) and read_head(path, 4) == ZIP_MAGIC
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
        if is_zip(member.path):
            error = "an archive inside the archive is not expanded; upload it on its own"
            yield Candidate(member.path, logical, display, True, error=error)
            continue
        yield Candidate(member.path, logical, display, explicit=False, archived=True)


class KnownFile(NamedTuple):
    """What an ingest needs to know of a file read before to tell it unchanged."""

    pk: int
    format: str
    size: int
    mtime_ns: int | None
    sha256: str
    status: str
    companions: dict
    parser_version: int | None
    source_id: int | None


# The known files at a list of paths, bound as one parameter whatever their number
# (binding and logging an IN list of 10,000 parameters cost more than the lookups).
_KNOWN_FILES_SQL = """
    SELECT path, id, format, size, mtime_ns, sha256, status, companions, {version}, source_id
    FROM {table} WHERE {matches}
"""
_KNOWN_FILES_BY_VENDOR = {
    "sqlite": (
        "json_extract(produced, '$.parser_version')",
        "path IN (SELECT value FROM json_each(%s))",
    ),
    "postgresql": ("CAST(produced ->> 'parser_version' AS integer)", "path = ANY(%s)"),
}
_OK = TraceFile.FileStatus.OK.value
# The columns of a known_rows() row, as they come from the database.
_PATH, _ID, _FORMAT, _SIZE, _MTIME_NS, _SHA256, _STATUS, _COMPANIONS, _VERSION, _SOURCE = range(10)


def known_rows(logical_paths: Iterable[str]) -> dict[str, tuple]:
    """The rows of the files already recorded at these paths, read in one query
    for a whole batch, left as the database gives them: a rescan compares the
    stat of 10,000 files with them, and makes objects only for those that changed."""
    paths = list(logical_paths)
    if not paths:
        return {}
    version, matches = _KNOWN_FILES_BY_VENDOR[connection.vendor]
    sql = _KNOWN_FILES_SQL.format(version=version, table=TraceFile._meta.db_table, matches=matches)
    param = paths if connection.vendor == "postgresql" else orjson.dumps(paths).decode()
    with connection.cursor() as cursor:
        cursor.execute(sql, [param])
        return {row[_PATH]: row for row in cursor.fetchall()}


def known_file(row: tuple) -> KnownFile:
    companions = row[_COMPANIONS]
    if not isinstance(companions, dict):
        companions = {} if companions == "{}" else orjson.loads(companions)
    return KnownFile(*row[_ID:_COMPANIONS], companions, row[_VERSION], row[_SOURCE])


def known_files(logical_paths: Iterable[str]) -> dict[str, KnownFile]:
    """known_rows() as KnownFile tuples (model instances cost most of a rescan)."""
    return {path: known_file(row) for path, row in known_rows(logical_paths).items()}


def unchanged_by_stat(row: tuple | None, info: os.stat_result, versions: dict[str, int]) -> bool:
    """Whether the file of this known_rows() row, stat'ed now, is unchanged without
    reading it: read before without error, by the parser of today (`versions`: the
    parser version by format, of the formats whose files are read alone), and of the
    size and mtime it had then. The loader's own test, for a plain file."""
    return (
        row is not None
        and row[_SIZE] == info.st_size
        and row[_MTIME_NS] == info.st_mtime_ns
        and row[_STATUS] == _OK
        and (row[_VERSION] or 1) == versions.get(row[_FORMAT])
        and row[_COMPANIONS] in ("{}", {})
    )


def source_of(row: tuple) -> int | None:
    return row[_SOURCE]
