"""Ingest files, directories and zip archives: the one entry point that the
`ingest` command, the upload page, the API and the background tasks call.

Each file is read in its own transaction: it is written whole or not at all,
a bad file is recorded with a message naming it and the reason, and the rest
of the batch goes on. A file whose size and mtime (or else content hash) are
unchanged is not read again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from traces.models import Run, TraceFile, TraceSource

from . import FORMATS, detect, get_format
from .common import read_head
from .records import ParseError
from .store import RunIndex, delete_runs, write_run

log = logging.getLogger(__name__)

# Never trace data: journals, temp files of writers caught mid-rename, our own WAL files.
IGNORED_SUFFIXES = (".tmp", "-journal", "-wal", "-shm", ".part", ".swp")
ZIP_MAGIC = b"PK\x03\x04"
# TraceFile.path's length; an error message is cut at MAX_ERROR characters.
MAX_PATH = 2000
MAX_ERROR = 4000


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


@dataclass
class FileResult:
    path: str
    display_name: str
    outcome: str  # ingested | unchanged | failed | skipped
    format: str = ""
    error: str = ""
    counts: Counter = field(default_factory=Counter)
    runs_added: list[int] = field(default_factory=list)
    runs_updated: list[int] = field(default_factory=list)
    runs_unchanged: list[int] = field(default_factory=list)
    file_id: int | None = None
    # What the file holds (also the runs it gave unchanged): its `produced`.
    held: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "path": self.display_name,
            "logical_path": self.path,
            "file_id": self.file_id,
            "outcome": self.outcome,
            "format": self.format,
            "error": self.error,
            "runs_added": self.runs_added,
            "runs_updated": self.runs_updated,
            "runs_unchanged": self.runs_unchanged,
            **{name: self.counts[name] for name in ("runs", "steps", "calls", "links", "logs")},
        }

    @classmethod
    def from_dict(cls, data: dict) -> FileResult:
        """Back from `as_dict()` (a background job keeps its results as JSON)."""
        counts = Counter(
            {name: data.get(name, 0) for name in ("runs", "steps", "calls", "links", "logs")}
        )
        return cls(
            path=data.get("logical_path", data["path"]),
            display_name=data["path"],
            outcome=data["outcome"],
            format=data.get("format", ""),
            error=data.get("error", ""),
            counts=counts,
            runs_added=list(data.get("runs_added", [])),
            runs_updated=list(data.get("runs_updated", [])),
            runs_unchanged=list(data.get("runs_unchanged", [])),
            file_id=data.get("file_id"),
        )


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def failed(self) -> list[FileResult]:
        return [result for result in self.files if result.outcome == "failed"]

    def run_ids(self) -> list[int]:
        """Runs this batch added or updated, each once."""
        ids = dict.fromkeys(
            run_id for result in self.files for run_id in result.runs_added + result.runs_updated
        )
        return list(ids)

    def summary(self) -> dict:
        """The `ingest --json` document. Counts are those of the runs written,
        each counted once with its final content (a running snapshot replaced
        by its finished file in the same batch is one run)."""
        outcomes = Counter(result.outcome for result in self.files)
        totals = _run_totals(self.run_ids())
        return {
            "files": {
                "ingested": outcomes["ingested"],
                "unchanged": outcomes["unchanged"],
                "failed": outcomes["failed"],
                "skipped": outcomes["skipped"],
            },
            **totals,
            "errors": [{"path": r.display_name, "error": r.error} for r in self.failed],
            "skipped": [
                {"path": r.display_name, "reason": r.error}
                for r in self.files
                if r.outcome == "skipped"
            ],
        }


def _run_totals(run_ids: list[int]) -> dict:
    totals = Counter()
    for start in range(0, len(run_ids), 5000):
        chunk = Run.objects.filter(pk__in=run_ids[start : start + 5000]).aggregate(
            runs=Count("id"),
            steps=Sum("step_count"),
            calls=Sum("call_count"),
            links=Sum("link_count"),
            logs=Sum("log_count"),
        )
        totals.update({name: value or 0 for name, value in chunk.items()})
    return {name: totals[name] for name in ("runs", "steps", "calls", "links", "logs")}


ProgressCallback = Callable[[int, int, str], None]


def ingest_paths(
    paths: Iterable[str | Path],
    *,
    format: str | None = None,
    source: TraceSource | None = None,
    uploaded: bool = False,
    display_names: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Ingest files, directories (recursively) and zip archives."""
    forced = get_format(format) if format else None
    report = IngestReport()
    with contextlib.ExitStack() as stack:
        candidates = list(_collect(paths, stack, display_names or {}))
        known = _known_files(candidate.logical_path for candidate in candidates)
        by_real = {_resolved(c.real_path): c for c in candidates if not c.error}
        done: set[str] = set()
        context = _Context(forced, known, source, uploaded, done, by_real)
        for index, candidate in enumerate(candidates):
            if progress:
                progress(index, len(candidates), candidate.display_name)
            if candidate.logical_path in done:
                continue
            done.add(candidate.logical_path)
            report.files.append(_ingest_candidate(candidate, context))
        if progress:
            progress(len(candidates), len(candidates), "")
    return report


def format_names() -> list[str]:
    """The names of the formats the loader reads, for the pages that list them."""
    return list(FORMATS)


# --- finding files ------------------------------------------------------------------------


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


# --- one file -----------------------------------------------------------------------------


@dataclass
class _Context:
    """What every file of one batch shares."""

    forced: ModuleType | None
    known: dict[str, TraceFile]
    source: TraceSource | None
    uploaded: bool
    done: set[str]
    by_real: dict[str, Candidate]
    # Why each file of the batch that failed did: a companion read with it fails too.
    failed: dict[str, str] = field(default_factory=dict)


def _ingest_candidate(candidate: Candidate, ctx: _Context) -> FileResult:
    result = FileResult(candidate.logical_path, candidate.display_name, "failed")
    if candidate.error:
        return _fail(result, candidate, ctx, candidate.error)
    try:
        info = candidate.real_path.stat()
    except OSError as exc:
        return _fail(result, candidate, ctx, f"cannot read: {exc.strerror}")
    if not stat.S_ISREG(info.st_mode):
        return _skip_or_fail(result, candidate, ctx, "not a regular file")
    trace_file = ctx.known.get(candidate.logical_path)
    if _unchanged_by_stat(trace_file, info, candidate):
        result.outcome, result.format, result.file_id = (
            "unchanged",
            trace_file.format,
            trace_file.pk,
        )
        return result
    try:
        module = ctx.forced or (detect(candidate.real_path) if info.st_size else None)
    except ParseError as exc:
        return _fail(result, candidate, ctx, str(exc))
    except OSError as exc:
        return _fail(result, candidate, ctx, f"cannot read: {exc}")
    if module is None:
        return _skip_or_fail(result, candidate, ctx, _unrecognised_reason(info))
    result.format = module.NAME
    main = getattr(module, "companion_of", lambda _path: None)(candidate.real_path)
    if main is not None:
        return _ingest_companion(candidate, module, Path(main), ctx, result)
    return _ingest_file(candidate, module, info, trace_file, ctx, result)


def _unrecognised_reason(info: os.stat_result) -> str:
    if info.st_size == 0:
        return (
            "empty file (a trace can be caught empty while it is written; "
            "it is read again when it changes)"
        )
    return "not a trace file in any known format (" + ", ".join(FORMATS) + ")"


def _unchanged_by_stat(
    trace_file: TraceFile | None, info: os.stat_result, candidate: Candidate
) -> bool:
    if trace_file is None or trace_file.status != TraceFile.FileStatus.OK or candidate.archived:
        return False
    if trace_file.size != info.st_size or trace_file.mtime_ns != info.st_mtime_ns:
        return False
    if not _read_by_current_parser(trace_file):
        return False
    if not trace_file.companions:
        return True
    return _companion_hashes(trace_file.format, candidate.real_path) == trace_file.companions


def parser_version(format_name: str) -> int:
    """A format module's `PARSER_VERSION`, raised when it reads files differently: a
    file read by an older parser is read again even though it did not change."""
    return getattr(FORMATS.get(format_name), "PARSER_VERSION", 1)


def _read_by_current_parser(trace_file: TraceFile) -> bool:
    produced = trace_file.produced or {}
    return produced.get("parser_version", 1) == parser_version(trace_file.format)


def _ingest_file(candidate, module, info, trace_file, ctx: _Context, result) -> FileResult:
    try:
        digest = _sha256(candidate.real_path)
        companions = _companion_hashes(module.NAME, candidate.real_path)
    except OSError as exc:
        return _fail(result, candidate, ctx, f"cannot read: {exc}", trace_file)
    if (
        trace_file is not None
        and trace_file.status == TraceFile.FileStatus.OK
        and trace_file.sha256 == digest
        and trace_file.companions == companions
        and _read_by_current_parser(trace_file)
    ):
        _touch(trace_file, info)
        result.outcome, result.file_id = "unchanged", trace_file.pk
        return result
    try:
        with transaction.atomic():
            trace_file = _save_file(
                trace_file, candidate, module.NAME, info, digest, companions, ctx
            )
            _write_runs(module, candidate, trace_file, result)
            trace_file.produced = {
                **{name: result.held[name] for name in ("runs", "steps", "calls", "links", "logs")},
                "parser_version": parser_version(module.NAME),
            }
            trace_file.save(update_fields=["produced"])
    except ParseError as exc:
        result.counts.clear()
        return _fail(result, candidate, ctx, _retry_hint(str(exc), info), _reload(trace_file))
    except Exception as exc:  # a bug or a database error must not stop the batch
        log.exception("ingest of %s failed", candidate.display_name)
        result.counts.clear()
        message = f"internal error while ingesting ({type(exc).__name__}: {exc})"
        return _fail(result, candidate, ctx, message, _reload(trace_file))
    result.outcome, result.file_id = "ingested", trace_file.pk
    return result


def _write_runs(module, candidate: Candidate, trace_file: TraceFile, result: FileResult) -> None:
    seen: set[int] = set()
    index = RunIndex()
    # A run the file gives twice (duplicate rows) is counted once, as last written.
    written: dict[int, Counter] = {}
    held: dict[int, Counter] = {}
    for record in module.parse(candidate.real_path):
        origin = candidate.logical_path if record.origin else ""
        outcome = write_run(record, source_file=trace_file, origin=origin, index=index)
        again = outcome.run_id in seen
        seen.add(outcome.run_id)
        held[outcome.run_id] = outcome.counts
        if outcome.action == "added":
            result.runs_added.append(outcome.run_id)
        elif outcome.action == "updated":
            if not again:
                result.runs_updated.append(outcome.run_id)
            elif outcome.run_id in result.runs_unchanged:  # rare: only for a repeated run
                result.runs_unchanged.remove(outcome.run_id)
                result.runs_updated.append(outcome.run_id)
        else:
            if not again:
                result.runs_unchanged.append(outcome.run_id)
            continue
        written[outcome.run_id] = outcome.counts
    for counts in written.values():
        result.counts["runs"] += 1
        result.counts.update(counts)
    result.held["runs"] = len(held)
    for counts in held.values():
        result.held.update(counts)
    _settle_runs_not_seen(trace_file, seen)


def _settle_runs_not_seen(trace_file: TraceFile, seen: set[int]) -> None:
    """Runs this file gave before and no longer holds (greentic's trace.json replaced by
    the next invocation, rows removed by a database's retention) are the history: kept,
    marked as having left their source, unless the source mirrors deletions. Runs it
    holds again are back in it, also those the store did not rewrite (unchanged, kept).

    The diff is made in Python and written in chunks: an `IN` list of every run of a
    big database would pass SQLite's limit of 32,766 parameters."""
    own = dict(Run.objects.filter(source_file=trace_file).values_list("pk", "left_source_at"))
    _settle_left([pk for pk in own if pk not in seen], trace_file.source, own)
    # A run seen here whose row names another file (the same greentic bytes at another
    # path, a traceos trace in two cumulative dumps) or that had left: this file holds
    # it now, so the other file's next version no longer speaks for it.
    back = [pk for pk in seen if pk not in own or own[pk] is not None]
    for chunk in _chunks(back):
        Run.objects.filter(pk__in=chunk).update(left_source_at=None, source_file=trace_file)


def _settle_left(gone: list[int], source: TraceSource | None, left_at: dict) -> None:
    """Runs no longer in their source: deleted if the source mirrors deletions, else
    marked (the first time they left stays)."""
    if source is not None and source.mirror_deletions:
        for chunk in _chunks(gone):
            delete_runs(chunk)
        return
    now = timezone.now()
    newly_gone = [pk for pk in gone if left_at.get(pk) is None]
    for chunk in _chunks(newly_gone):
        Run.objects.filter(pk__in=chunk).update(left_source_at=now)


def settle_vanished_files(source: TraceSource, scanned_paths: set[str]) -> int:
    """After a scan: the source's files that are no longer there (a trace dir cleaned
    up, a rotated dump) took their runs out of the source. Returns how many runs that
    newly concerned."""
    files = TraceFile.objects.filter(source=source, status=TraceFile.FileStatus.OK)
    vanished = [pk for pk, path in files.values_list("pk", "path") if path not in scanned_paths]
    settled = 0
    for chunk in _chunks(vanished):
        runs = Run.objects.filter(source_file_id__in=chunk)
        if not source.mirror_deletions:
            runs = runs.filter(left_source_at__isnull=True)
        gone = list(runs.values_list("pk", flat=True))
        with transaction.atomic():
            _settle_left(gone, source, {})
        settled += len(gone)
    return settled


# Ids per statement when updating or deleting runs by id (SQLite allows 32,766 parameters).
ID_CHUNK = 500


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), ID_CHUNK):
        yield ids[start : start + ID_CHUNK]


def _save_file(trace_file, candidate, format_name, info, digest, companions, ctx) -> TraceFile:
    now = timezone.now()
    if trace_file is None:
        trace_file = TraceFile(path=candidate.logical_path, first_seen_at=now)
    trace_file.display_name = candidate.display_name[:500]
    trace_file.format = format_name
    _set_stat(trace_file, info)
    trace_file.sha256 = digest
    trace_file.companions = companions
    trace_file.status = TraceFile.FileStatus.OK
    trace_file.error = ""
    trace_file.source = ctx.source or trace_file.source
    trace_file.uploaded = ctx.uploaded or trace_file.uploaded
    trace_file.ingested_at = now
    trace_file.checked_at = now
    trace_file.save()
    return trace_file


def _set_stat(trace_file: TraceFile, info: os.stat_result) -> None:
    trace_file.size = info.st_size
    trace_file.mtime = datetime.fromtimestamp(info.st_mtime, tz=UTC)
    trace_file.mtime_ns = info.st_mtime_ns


def _ingest_companion(candidate, module, main: Path, ctx: _Context, result) -> FileResult:
    """A file read as part of another (events.db beside workflow.db): ingest the
    main file, and record this one as read with it, or as failed with it.

    The main file's runs stay counted in this result even when recording this file
    fails: they were written, and the main file has no result of its own."""
    main_real = _resolved(main)
    main_candidate = ctx.by_real.get(main_real) or Candidate(
        main, _logical(main_real), storable(str(main)), True
    )
    main_result = None
    if main_candidate.logical_path not in ctx.done:
        ctx.done.add(main_candidate.logical_path)
        main_result = _ingest_candidate(main_candidate, ctx)
    # Read just now, or earlier in the batch (named before this file, or first by name).
    main_error = ctx.failed.get(main_candidate.logical_path)
    if main_error is not None:
        return _fail(result, candidate, ctx, f"read with {main.name}, which failed: {main_error}")
    if main_result is not None:
        result.counts = main_result.counts
        result.runs_added, result.runs_updated = main_result.runs_added, main_result.runs_updated
    try:
        info = candidate.real_path.stat()
        digest = _sha256(candidate.real_path)
    except OSError as exc:  # gone or unreadable since the batch listed it
        return _fail(result, candidate, ctx, f"cannot read: {exc.strerror}")
    trace_file = ctx.known.get(candidate.logical_path)
    try:
        with transaction.atomic():
            trace_file = _save_file(trace_file, candidate, module.NAME, info, digest, {}, ctx)
            trace_file.produced = {
                "companion_of": main_candidate.display_name,
                "parser_version": parser_version(module.NAME),
            }
            trace_file.save(update_fields=["produced"])
    except Exception as exc:  # a database error (a lock timeout) must not stop the batch
        log.exception("recording %s failed", candidate.display_name)
        message = f"internal error while ingesting ({type(exc).__name__}: {exc})"
        return _fail(result, candidate, ctx, message, _reload(trace_file))
    result.outcome, result.file_id = "ingested", trace_file.pk
    return result


def _companion_hashes(format_name: str, path: Path) -> dict:
    finder = getattr(FORMATS.get(format_name), "companion_paths", None)
    if finder is None:
        return {}
    return {storable(_resolved(Path(c))): _sha256(Path(c)) for c in finder(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _touch(trace_file: TraceFile, info: os.stat_result) -> None:
    _set_stat(trace_file, info)
    trace_file.checked_at = timezone.now()
    trace_file.save(update_fields=["size", "mtime", "mtime_ns", "checked_at"])


def _reload(trace_file: TraceFile | None) -> TraceFile | None:
    """After a rollback the row may be gone (it was new in that transaction)."""
    if trace_file is None:
        return None
    return TraceFile.objects.filter(path=trace_file.path).first()


def _retry_hint(message: str, info: os.stat_result) -> str:
    age = timezone.now().timestamp() - info.st_mtime
    if age < 60 and "written" not in message:
        message += (
            " (the file changed moments ago and may still be being written;"
            " it is read again when it changes)"
        )
    return message


def _skip_or_fail(result, candidate, ctx: _Context, reason: str) -> FileResult:
    if candidate.explicit:
        return _fail(result, candidate, ctx, reason)
    result.outcome, result.error = "skipped", reason
    return result


def _fail(result, candidate, ctx: _Context, reason: str, trace_file=None) -> FileResult:
    """Record a failed file; the runs it gave before, if any, stay as they were."""
    ctx.failed[candidate.logical_path] = reason
    message = storable(f"{candidate.display_name}: {reason}").replace("\x00", "\\x00")
    if len(message) > MAX_ERROR:
        message = message[: MAX_ERROR - 1] + "…"
    trace_file = trace_file or ctx.known.get(candidate.logical_path)
    now = timezone.now()
    if trace_file is None:
        trace_file = TraceFile(path=candidate.logical_path, first_seen_at=now)
    trace_file.display_name = candidate.display_name[:500]
    trace_file.format = trace_file.format or result.format
    trace_file.status = TraceFile.FileStatus.ERROR
    trace_file.error = message
    trace_file.checked_at = now
    trace_file.source = ctx.source or trace_file.source
    trace_file.uploaded = ctx.uploaded or trace_file.uploaded
    with contextlib.suppress(OSError):
        _set_stat(trace_file, candidate.real_path.stat())
    trace_file.save()
    result.outcome, result.error, result.file_id = "failed", message, trace_file.pk
    return result
