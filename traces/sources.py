"""Trace sources: directories and databases on the server that the site reads
and rescans, confined to `settings.TRACER_SOURCE_ROOTS`.

A path typed into /sources/ is untrusted: it is resolved (symlinks and `..`
included) and refused unless the result is inside a root and is a directory
or a regular file. A rescan checks again, and walks the directory itself so
that a symlink inside it pointing out of the roots is refused, never read.
The files that pass go to the loader (`ingest_found()`: walked and stat'ed once,
here), which writes them as it does everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F, Q
from django.utils import timezone

from traces.ingest import FORMATS, ParseError, detect
from traces.ingest.candidates import (
    ZIP_MAGIC,
    Candidate,
    KnownFile,
    _logical,
    known_file,
    known_rows,
    source_of,
    storable,
    unchanged_by_stat,
    walk_files,
)
from traces.ingest.history import settle_vanished_files
from traces.ingest.loader import ingest_found, ingest_paths
from traces.ingest.report import IngestReport
from traces.models import TraceFile, TraceSource

log = logging.getLogger(__name__)

# A scan that started this long ago without finishing is taken to have died.
SCAN_TIMEOUT = timedelta(hours=1)
# Entries of each list kept in a source's last report; the rest are counted.
REPORT_LIST_LIMIT = 200
# Paths per UPDATE when a scan takes over the files no source held.
ADOPT_CHUNK = 500


class SourcePathError(ValueError):
    """Why a path cannot be a source (a message for the user)."""


class ScanInProgress(Exception):
    pass


# --- confinement ----------------------------------------------------------------------------


def source_roots() -> list[Path]:
    return [Path(root).resolve() for root in settings.TRACER_SOURCE_ROOTS]


def is_inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def confine(raw: str | Path) -> Path:
    """The resolved path, if it may be a source; else SourcePathError saying why."""
    text = str(raw).strip()
    if not text:
        raise SourcePathError("Give the path of a directory or a database file.")
    if "\x00" in text:
        raise SourcePathError("The path contains a NUL byte.")
    path = Path(text)
    if not path.is_absolute():
        raise SourcePathError(f"Give an absolute path, inside {_roots_text()}.")
    roots = source_roots()
    # Refuse by name first, so that paths outside the roots are never even looked at.
    written = Path(os.path.normpath(path))
    if not is_inside(written, roots + [Path(os.path.normpath(r)) for r in _raw_roots()]):
        raise SourcePathError(f"{text} is outside the allowed roots ({_roots_text()}).")
    resolved = _resolve(path, text)
    if not is_inside(resolved, roots):
        raise SourcePathError(
            f"{text} leads outside the allowed roots ({_roots_text()}) once its symbolic "
            "links and '..' are followed."
        )
    info = resolved.stat()
    if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
        raise SourcePathError(f"{text} is {file_kind(info.st_mode)}, not a directory or a file.")
    wanted = os.R_OK | (os.X_OK if stat.S_ISDIR(info.st_mode) else 0)
    if not os.access(resolved, wanted):
        raise SourcePathError(f"{text} cannot be read by the server (permission denied).")
    return resolved


def _resolve(path: Path, text: str) -> Path:
    try:
        return path.resolve(strict=True)
    except FileNotFoundError:
        raise SourcePathError(f"{text} does not exist.") from None
    except PermissionError:
        raise SourcePathError(f"{text} cannot be reached (permission denied).") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise SourcePathError(f"{text} cannot be resolved ({exc}).") from None


def _raw_roots() -> list[str]:
    return [str(root) for root in settings.TRACER_SOURCE_ROOTS]


def _roots_text() -> str:
    return ", ".join(_raw_roots()) or "no root is configured: set TRACER_SOURCE_ROOTS"


def file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


# --- what a rescan reads --------------------------------------------------------------------


@dataclass
class ScanPlan:
    """The files to hand to the loader, and those refused or skipped before it."""

    files: list[Candidate] = field(default_factory=list)
    # known_files() of the files handed to the loader (read with those of the plan).
    known: dict[str, KnownFile] = field(default_factory=dict)
    # Logical paths of the files found unchanged by the plan itself (not handed to
    # the loader: most of a rescan), and how many of them are the source's own.
    unchanged: list[str] = field(default_factory=list)
    unchanged_held: int = 0
    # Of those, the files the site read before outside any source (a command-line
    # ingest): the scan makes them the source's, as it does a file it reads anew.
    unowned: list[str] = field(default_factory=list)
    # The source is this one file: the loader judges it, whatever it is (an archive
    # is expanded), as it would a file named on the command line.
    named_file: bool = False
    refused: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def refuse(self, path: Path | str, reason: str) -> None:
        self.refused.append({"path": str(path), "reason": reason})

    def skip(self, path: Path | str, reason: str) -> None:
        self.skipped.append({"path": str(path), "reason": reason})


def plan_scan(top: Path, roots: list[Path], *, source_id: int | None = None) -> ScanPlan:
    """Walk `top` (already confined) without following directory links, and keep
    each file whose real path stays inside the roots.

    A file read before without error, by the parser of today, whose size and mtime
    are those it had then, is unchanged: it is only counted (with the loader's own
    test, made here in one tight loop, since it is nearly every file of a rescan).
    The others are handed to the loader one by one, so it treats each as named
    explicitly and would fail one that is not a trace at all; here those are
    skipped first, as the loader's own directory walk would."""
    plan = ScanPlan()
    if top.is_file():
        plan.named_file = True
        module = _sniff(top)
        candidate = Candidate(top, _logical(str(top)), storable(str(top)), True, resolved=str(top))
        _keep(plan, candidate, module if isinstance(module, ModuleType) else None, roots)
        return plan
    with _collector_paused():
        found = list(_confined_files(top, roots, plan))
        names = [_logical(real) for _path, real, _info in found]
        changed = _count_unchanged(plan, found, names, known_rows(names), source_id)
        del found, names  # freed before the collector is back (it would go through them)
    for path, real, info, name, row in changed:
        seen = None
        if row is not None:
            seen = plan.known[name] = known_file(row)
        candidate = Candidate(real, name, storable(path), True, info=info, resolved=real)
        module = _known_unchanged(seen, info) or _recognise(candidate.display_name, real, plan)
        if module is not False:
            _keep(plan, candidate, module, roots)
    return plan


def _count_unchanged(
    plan: ScanPlan, found: list, names: list[str], rows: dict, source_id: int | None
) -> list[tuple]:
    """Count the files unchanged by stat (the loop of a rescan, per file: kept
    tight); the others, with their known row (or None)."""
    versions = _read_alone_versions()
    unchanged, held, changed = plan.unchanged, 0, []
    for (path, real, info), name in zip(found, names, strict=True):
        row = rows.get(name)
        if unchanged_by_stat(row, info, versions):
            unchanged.append(name)
            owner = source_of(row)
            if owner == source_id:
                held += 1
            elif owner is None and source_id is not None:
                plan.unowned.append(name)
        else:
            changed.append((path, real, info, name, row))
    plan.unchanged_held = held
    return changed


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a scan makes a stat, a row and a few
    strings for each of 10,000 files, none of them in a cycle: otherwise their number
    sets off a full collection of the process's objects, a quarter of a rescan."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_alone_versions() -> dict[str, int]:
    """The parser version of each format whose files are read alone: a file of one
    of those is unchanged when its stat is (a file read with others, a workflow.db
    and its events.db, is left to the loader, which hashes the others)."""
    return {
        name: getattr(module, "PARSER_VERSION", 1)
        for name, module in FORMATS.items()
        if not hasattr(module, "companion_of") and not hasattr(module, "companion_paths")
    }


def _keep(plan: ScanPlan, candidate: Candidate, module, roots: list[Path]) -> None:
    if _read_with_others(module) and not _companions_inside(candidate.real_path, module, roots):
        plan.refuse(
            Path(candidate.display_name),
            "is read together with a file outside the allowed roots; not read",
        )
        return
    plan.files.append(candidate)


def _confined_files(top: Path, roots: list[Path], plan: ScanPlan) -> Iterator[tuple]:
    """(path as walked, real path, stat) of each regular file inside the roots, as text.

    `top` is resolved, and no directory link is followed: a file that is not a link
    is where it was found, inside the roots; only links are resolved and checked."""
    note_link = functools.partial(_note_directory_link, roots=roots, plan=plan)
    regular = stat.S_ISREG
    for path, resolved, info in walk_files(str(top), str(top), note_link):
        if resolved and info is not None:
            if (regular(info.st_mode) and info.st_size) or _regular_file(path, info, plan):
                yield path, resolved, info
            continue
        real = _confined_file(Path(path), roots, plan)
        if real is not None:
            yield path, str(real), real.stat()


def _note_directory_link(path: Path, roots: list[Path], plan: ScanPlan) -> None:
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        plan.skip(path, "a broken symbolic link")
        return
    if is_inside(target, roots):
        plan.skip(path, "a symbolic link to a directory: not followed (add it as its own source)")
    else:
        plan.refuse(path, "is a symbolic link leading outside the allowed roots; not read")


def _confined_file(path: Path, roots: list[Path], plan: ScanPlan):
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        plan.skip(path, "a broken symbolic link" if path.is_symlink() else "cannot be read")
        return None
    if not is_inside(real, roots):
        plan.refuse(path, "is a symbolic link leading outside the allowed roots; not read")
        return None
    try:
        info = real.stat()
    except OSError as exc:
        plan.skip(path, f"cannot be read ({exc.strerror})")
        return None
    return real if _regular_file(path, info, plan) else None


def _regular_file(path: Path | str, info: os.stat_result, plan: ScanPlan) -> bool:
    if not stat.S_ISREG(info.st_mode):
        plan.skip(path, f"{file_kind(info.st_mode)}, not a regular file")
        return False
    if info.st_size == 0:
        plan.skip(path, "empty file (it is read again when it changes)")
        return False
    return True


def _known_unchanged(known: KnownFile | None, info: os.stat_result) -> ModuleType | None:
    """The format of a file read before and unchanged since: it is not sniffed
    again (the loader will find it unchanged without reading it)."""
    if known is None or known.status != TraceFile.FileStatus.OK:
        return None
    if (known.size, known.mtime_ns) != (info.st_size, info.st_mtime_ns):
        return None
    return FORMATS.get(known.format)


def _sniff(real: Path) -> ModuleType | str | None:
    """The file's format module; "zip" for an archive; None when no format
    recognises it; "broken" when it cannot be read or claims a format and is
    broken (the loader then reports it, with the reason)."""
    try:
        with open(real, "rb") as handle:
            head = handle.read(65536)
        if head.startswith(ZIP_MAGIC):
            return "zip"
        return detect(real, head)
    except (OSError, ParseError):
        return "broken"


def _recognise(path: str, real: str, plan: ScanPlan):
    """The format module; None to let the loader judge (and report) the file;
    False when it is skipped here, as the loader's walk would skip it."""
    module = _sniff(Path(real))
    if module == "zip":
        plan.skip(path, "a zip archive: archives in a source are not expanded")
        return False
    if module is None:
        plan.skip(path, "not a trace file in any known format (" + ", ".join(FORMATS) + ")")
        return False
    return module if isinstance(module, ModuleType) else None


def _read_with_others(module: ModuleType | None) -> bool:
    return hasattr(module, "companion_of") or hasattr(module, "companion_paths")


def _companions_inside(real: Path, module: ModuleType, roots: list[Path]) -> bool:
    """A file read with another (workflow's events.db) must be inside the roots too."""
    others: list[Path] = []
    try:
        main = getattr(module, "companion_of", lambda _path: None)(real)
        others.extend([main] if main is not None else [])
        others.extend(getattr(module, "companion_paths", lambda _path: [])(real))
        return all(is_inside(Path(other).resolve(strict=True), roots) for other in others)
    except (OSError, RuntimeError, ParseError):
        return False


# --- rescanning -----------------------------------------------------------------------------


# How the files a scan found changed are read: (files, known_files() of them, source).
Reader = Callable[[list[Candidate], dict[str, KnownFile], TraceSource], IngestReport]


def read_here(files: list[Candidate], known: dict[str, KnownFile], source) -> IngestReport:
    return ingest_found(files, known, source=source)


def rescan(source: TraceSource, *, read: Reader = read_here) -> dict:
    """Scan a source now and record the report on it. ScanInProgress if another
    scan of it is running. `read`: how the files found changed are read (a
    background job shares many among db_workers)."""
    if not _claim(source):
        raise ScanInProgress(f"a scan of {source} is already running")
    started = time.monotonic()
    try:
        summary = _scan(source, read)
    except Exception as exc:  # the scheduler must go on with the other sources
        log.exception("rescan of source %s failed", source.path)
        summary = empty_report(f"internal error while scanning ({type(exc).__name__}: {exc})")
    summary["duration_ms"] = round((time.monotonic() - started) * 1000)
    _record(source, summary)
    return summary


def _scan(source: TraceSource, read: Reader) -> dict:
    try:
        top = confine(source.path)
    except SourcePathError as exc:
        return empty_report(str(exc))
    plan = plan_scan(top, source_roots(), source_id=source.pk)
    if plan.named_file:
        report = ingest_paths([c.real_path for c in plan.files], source=source)
    elif plan.files:
        report = read(plan.files, plan.known, source)
    else:
        report = IngestReport()
    scanned = {result.path for result in report.files}
    scanned.update(c.logical_path for c in plan.files)  # companions read with another
    scanned.update(plan.unchanged)
    adopted = _adopt_unowned(source, report, plan)
    summary = merge_report(report, plan)
    # A scan that finds nothing settles nothing: an unmounted disk looks like an empty
    # directory, and its runs have not left.
    if scanned:
        held = _files_held(source, report, plan.known) + plan.unchanged_held + adopted
        summary["runs_left_source"] = settle_vanished_files(source, scanned, held)
    else:
        summary["runs_left_source"] = 0
    return summary


def _files_held(source: TraceSource, report: IngestReport, known: dict[str, KnownFile]) -> int:
    """How many files this scan saw that are now the source's, read without error:
    when the source has no more than these, none of its files vanished."""
    source_id = source.pk
    held = {
        result.path
        for result in report.files
        if result.outcome == "ingested"
        or (result.outcome == "unchanged" and _owned_by(known.get(result.path), source_id))
    }
    return len(held)


def _adopt_unowned(source: TraceSource, report: IngestReport, plan: ScanPlan) -> int:
    """The files this scan found unchanged that no source holds (read before by the
    ingest command, say) become this source's, as a file it reads anew does: its page
    then lists the files its report counts. A file another source holds stays its."""
    names = list(plan.unowned)
    for result in report.files:
        known = plan.known.get(result.path)
        if result.outcome == "unchanged" and known is not None and known.source_id is None:
            names.append(result.path)
    adopted = 0
    for start in range(0, len(names), ADOPT_CHUNK):
        chunk = names[start : start + ADOPT_CHUNK]
        unowned = TraceFile.objects.filter(path__in=chunk, source__isnull=True)
        adopted += unowned.update(source=source)
    return adopted


def _owned_by(known: KnownFile | None, source_id: int) -> bool:
    return known is not None and known.source_id == source_id


def empty_report(error: str = "") -> dict:
    files = dict.fromkeys(("ingested", "unchanged", "failed", "skipped", "refused"), 0)
    totals = dict.fromkeys(("runs", "steps", "calls", "links", "logs"), 0)
    lists = {"errors": [], "skipped": [], "refused": []}
    return {
        "files": files,
        **totals,
        **lists,
        "files_found": 0,
        "runs_left_source": 0,
        "error": error,
    }


def merge_report(report: IngestReport, plan: ScanPlan) -> dict:
    """The loader's summary, plus what the scan refused or skipped before it."""
    summary = report.summary()
    summary["files"]["unchanged"] += len(plan.unchanged)
    skipped = plan.skipped + summary["skipped"]
    summary["files"]["skipped"] = len(skipped)
    summary["files"]["refused"] = len(plan.refused)
    summary["skipped"] = skipped[:REPORT_LIST_LIMIT]
    summary["refused"] = plan.refused[:REPORT_LIST_LIMIT]
    summary["errors"] = summary["errors"][:REPORT_LIST_LIMIT]
    summary["error"] = ""
    # Counted on disk: the loader reports a file read with another (events.db) only once.
    found = (plan.files, plan.unchanged, plan.skipped, plan.refused)
    summary["files_found"] = sum(len(files) for files in found)
    return summary


def _claim(source: TraceSource) -> bool:
    """Mark the scan started, unless one is running: one UPDATE, so two
    schedulers (or a button and a scheduler) cannot scan the same source at once."""
    now = timezone.now()
    idle = (
        Q(last_scan_started_at__isnull=True)
        | Q(last_scan_finished_at__gte=F("last_scan_started_at"))
        | Q(last_scan_started_at__lt=now - SCAN_TIMEOUT)
    )
    claimed = TraceSource.objects.filter(idle, pk=source.pk).update(last_scan_started_at=now)
    if claimed:
        source.last_scan_started_at = now
    return claimed == 1


def _record(source: TraceSource, summary: dict) -> None:
    files = summary["files"]
    source.last_scan_finished_at = timezone.now()
    source.last_scan_report = summary
    source.files_found = summary.get("files_found", 0)
    source.files_failed = files["failed"]
    source.save(
        update_fields=[
            "last_scan_finished_at",
            "last_scan_report",
            "files_found",
            "files_failed",
        ]
    )


def next_scan_at(source: TraceSource) -> datetime | None:
    """When the schedule next wants this source scanned (None: on demand only)."""
    if not source.enabled or source.rescan_every is None:
        return None
    if source.last_scan_started_at is None:
        return source.created_at
    return source.last_scan_started_at + source.rescan_every


def is_due(source: TraceSource, now: datetime | None = None) -> bool:
    due = next_scan_at(source)
    if due is None:
        return False
    return source.last_scan_started_at is None or due <= (now or timezone.now())


def sources_to_scan(*, everything: bool = False, now: datetime | None = None) -> list:
    """Enabled sources whose schedule has come round (or all enabled ones)."""
    enabled = list(TraceSource.objects.filter(enabled=True).order_by("path"))
    return enabled if everything else [s for s in enabled if is_due(s, now)]


def report_line(source: TraceSource, summary: dict) -> str:
    """One line for the terminal: what a scan of a source found."""
    if summary.get("error"):
        return f"{source.path}: error: {summary['error']}"
    files = summary["files"]
    return (
        f"{source.path}: {files['ingested']} ingested, {files['unchanged']} unchanged, "
        f"{files['failed']} failed, {files['skipped']} skipped, {files['refused']} refused"
        f" · runs {summary['runs']} · {summary.get('duration_ms', 0) / 1000:.1f}s"
    )


# --- watching paths (ingest --watch) --------------------------------------------------------


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def refresh_connection() -> None:
    """Between rounds of a long-lived process: drop a connection the database
    server may have closed meanwhile (never inside a transaction, as in tests)."""
    if not connection.in_atomic_block:
        close_old_connections()


@dataclass
class WatchResult:
    last: IngestReport | None
    scans: int
    interrupted: bool


def watch_paths(
    paths: list[str],
    *,
    interval: float,
    on_scan: Callable[[IngestReport, bool], None],
    max_scans: int | None = None,
    format: str | None = None,
    progress=None,
) -> WatchResult:
    """Ingest `paths` again every `interval` seconds until interrupted (or
    `max_scans`). `on_scan(report, changed)`: changed when a file was ingested
    or the set of failures differs from the previous scan's (always on the first)."""
    result = WatchResult(None, 0, False)
    failures: set | None = None
    try:
        while max_scans is None or result.scans < max_scans:
            if result.scans:
                _sleep(interval)
                refresh_connection()
            report = ingest_paths(paths, format=format, progress=progress)
            progress = None  # a progress bar for the first scan only
            result.last, result.scans = report, result.scans + 1
            now_failing = {(r.display_name, r.error) for r in report.failed}
            ingested = any(r.outcome == "ingested" for r in report.files)
            on_scan(report, ingested or now_failing != failures)
            failures = now_failing
    except KeyboardInterrupt:
        result.interrupted = True
    return result
