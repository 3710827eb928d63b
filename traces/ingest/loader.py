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
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from django.db import transaction
from django.utils import timezone

from traces.models import TraceFile, TraceSource

from . import FORMATS, detect, get_format
from .candidates import Candidate, _collect, _known_files, _logical, _resolved, storable
from .history import _settle_runs_not_seen
from .records import ParseError
from .report import FileResult, IngestReport
from .statistics import refresh_after
from .store import RunIndex, write_run

log = logging.getLogger(__name__)

# An error message is cut at MAX_ERROR characters.
MAX_ERROR = 4000


ProgressCallback = Callable[[int, int, str], None]


def ingest_paths(
    paths: Iterable[str | Path],
    *,
    format: str | None = None,
    source: TraceSource | None = None,
    uploaded: bool = False,
    display_names: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
    walked: bool = False,
) -> IngestReport:
    """Ingest files, directories (recursively) and zip archives. `walked`: the
    paths are files a directory walk found (in another process: `ingest --jobs`),
    so one in no known format is skipped, as in the walk, not failed."""
    forced = get_format(format) if format else None
    report = IngestReport()
    with contextlib.ExitStack() as stack:
        candidates = list(_collect(paths, stack, display_names or {}))
        if walked:
            candidates = [replace(candidate, explicit=False) for candidate in candidates]
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
    refresh_after(report)
    return report


def format_names() -> list[str]:
    """The names of the formats the loader reads, for the pages that list them."""
    return list(FORMATS)


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
        if outcome.action in ("added", "updated") or not again:
            held[outcome.run_id] = outcome.counts  # a repeat left as written keeps its counts
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
    index.settle()
    for counts in written.values():
        result.counts["runs"] += 1
        result.counts.update(counts)
    result.held["runs"] = len(held)
    for counts in held.values():
        result.held.update(counts)
    _settle_runs_not_seen(trace_file, seen)


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
