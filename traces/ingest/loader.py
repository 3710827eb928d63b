"""Ingest files, directories and zip archives: the one entry point that the
`ingest` command, the upload page, the API and the background tasks call.

One file is the unit of work: it is written whole or not at all (in its own
savepoint), a bad file is recorded with a message naming it and the reason,
and the rest of the batch goes on. Files share transactions (batches.py); a
database whose runs are read from a snapshot commits between whole runs. A
file whose size and mtime (or else content hash) are unchanged is not read
again.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from traces.models import TraceFile, TraceSource

from . import FORMATS, batches, detect, get_format
from .batches import WriteBatch
from .candidates import (
    ZIP_MAGIC,
    Candidate,
    KnownFile,
    _collect,
    _logical,
    _resolved,
    known_files,
    storable,
)
from .common import read_head
from .history import _settle_runs_not_seen
from .inserters import InstancePlan, insert_instances
from .read_models import ReadModelDeltas
from .records import ParseError, RunRecord
from .report import FileResult, IngestReport
from .statistics import refresh_after
from .store import RunIndex, write_run

log = logging.getLogger(__name__)
T = TypeVar("T")

# An error message is cut at MAX_ERROR characters.
MAX_ERROR = 4000
# What format detection reads of a file (a small file: all of it, also hashed).
HEAD_BYTES = 65536
# A file modified less than this before the ingest that reads it began can be written
# again after it was read within the same tick of its filesystem's clock (a few ms on
# ext4, 1 s on HFS+ or some NFS servers, 2 s on FAT), at the same size: its size and
# mtime would not tell. Its stat is not claimed as read, so the next ingest hashes it
# (once: by then the mtime is old enough to stand for the bytes).
RACY_NS = 2_000_000_000


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
    so one in no known format is skipped, as in the walk, not failed, and an
    archive among them is left out as a walk leaves it."""
    with contextlib.ExitStack() as stack:
        candidates = list(_collect(paths, stack, display_names or {}, archives=not walked))
        if walked:
            candidates = [replace(c, explicit=False, walked=True) for c in candidates]
        known = known_files(candidate.logical_path for candidate in candidates)
        return ingest_found(
            candidates, known, format=format, source=source, uploaded=uploaded, progress=progress
        )


def ingest_found(
    candidates: list[Candidate],
    known: dict[str, KnownFile],
    *,
    format: str | None = None,
    source: TraceSource | None = None,
    uploaded: bool = False,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Ingest files already found (a source's scan walks and stats them itself),
    `known` being `known_files()` of their logical paths."""
    forced = get_format(format) if format else None
    report = IngestReport()
    by_real = {c.resolved or _resolved(c.real_path): c for c in candidates if not c.error}
    context = _Context(forced, known, source, uploaded, set(), by_real, WriteBatch())
    with context.batch:
        for index, candidate in enumerate(candidates):
            if progress:
                progress(index, len(candidates), candidate.display_name)
            if candidate.logical_path in context.done:
                continue
            context.done.add(candidate.logical_path)
            result = _ingest_candidate(candidate, context)
            if result is not None:  # None: an archive in a walked directory, left out
                report.files.append(result)
            context.batch.commit_if_due()
        _write_read_ahead(context)
    if progress:
        progress(len(candidates), len(candidates), "")
    refresh_after(report, context.batch.statistics.fresh)
    return report


def format_names() -> list[str]:
    """The names of the formats the loader reads, for the pages that list them."""
    return list(FORMATS)


# --- one file -----------------------------------------------------------------------------


@dataclass
class _Context:
    """What every file of one batch shares."""

    forced: ModuleType | None
    known: dict[str, KnownFile]
    source: TraceSource | None
    uploaded: bool
    done: set[str]
    by_real: dict[str, Candidate]
    batch: WriteBatch
    # Why each file of the batch that failed did: a companion read with it fails too.
    failed: dict[str, str] = field(default_factory=dict)
    # Small files read and parsed, to be written together (`_write_read_ahead`).
    read_ahead: list[_ReadAhead] = field(default_factory=list)
    # The content hashes of the uploads read in this batch (`_known_content`).
    digests: set[str] = field(default_factory=set)
    # When the batch began (time.time_ns()), before any of its files was read.
    started_ns: int = field(default_factory=time.time_ns)


# Small files are read and parsed up to this many ahead of their writes, so that the
# runs they may update are looked up in one query for all of them (not one per run).
READ_AHEAD_FILES = 100
READ_AHEAD_BYTES = 1024 * 1024


@dataclass
class _ReadAhead:
    candidate: Candidate
    module: ModuleType
    info: os.stat_result
    hashes: tuple[str, dict]
    result: FileResult
    records: list[RunRecord]
    error: Exception | None


def _ingest_candidate(candidate: Candidate, ctx: _Context) -> FileResult | None:
    result = FileResult(candidate.logical_path, candidate.display_name, "failed")
    if candidate.error:
        return _fail(result, candidate, ctx, candidate.error)
    try:
        info = candidate.info or candidate.real_path.stat()
    except OSError as exc:
        return _fail(result, candidate, ctx, f"cannot read: {exc.strerror}")
    if not stat.S_ISREG(info.st_mode):
        return _skip_or_fail(result, candidate, ctx, "not a regular file")
    known = ctx.known.get(candidate.logical_path)
    if _unchanged_by_stat(known, info, candidate):
        result.outcome, result.format, result.file_id = "unchanged", known.format, known.pk
        return result
    # Read once for the checks below and, a small file's whole, for its hash.
    head = _read_head(candidate.real_path) if info.st_size else b""
    if candidate.walked and head is not None and head.startswith(ZIP_MAGIC):
        return None  # archives inside directories are not expanded; name them explicitly
    try:
        module = ctx.forced or (detect(candidate.real_path, head) if info.st_size else None)
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
    return _ingest_file(candidate, module, info, known, ctx, result, head)


def _read_head(path: Path) -> bytes | None:
    """The file's first HEAD_BYTES (None if unreadable: the checks then read it
    themselves, and say why they cannot)."""
    try:
        return read_head(path, HEAD_BYTES)
    except OSError:
        return None


def _unrecognised_reason(info: os.stat_result) -> str:
    if info.st_size == 0:
        return (
            "empty file (a trace can be caught empty while it is written; "
            "it is read again when it changes)"
        )
    return "not a trace file in any known format (" + ", ".join(FORMATS) + ")"


def _unchanged_by_stat(
    known: KnownFile | None, info: os.stat_result | None, candidate: Candidate
) -> bool:
    if known is None or info is None or known.status != TraceFile.FileStatus.OK:
        return False
    if candidate.archived or known.size != info.st_size or known.mtime_ns != info.st_mtime_ns:
        return False
    if not _read_by_current_parser(known):
        return False
    if not known.companions:
        return True
    return _companion_hashes(known.format, candidate.real_path) == known.companions


def parser_version(format_name: str) -> int:
    """A format module's `PARSER_VERSION`, raised when it reads files differently: a
    file read by an older parser is read again even though it did not change."""
    return getattr(FORMATS.get(format_name), "PARSER_VERSION", 1)


def _read_by_current_parser(known: KnownFile) -> bool:
    return (known.parser_version or 1) == parser_version(known.format)


def _unchanged_by_hash(known: KnownFile | None, digest: str, companions: dict) -> bool:
    if known is None or known.status != TraceFile.FileStatus.OK:
        return False
    same = known.sha256 == digest and known.companions == companions
    return same and _read_by_current_parser(known)


def _ingest_file(candidate, module, info, known, ctx: _Context, result, head=None) -> FileResult:
    """Ingest a file in a known format; a small one is only read and parsed here
    (its result filled in when the read-ahead files are written)."""
    ahead = _reads_ahead(module, candidate.real_path, info, head)
    if not ahead:
        _write_read_ahead(ctx)
    if _snapshot_read(module) and ctx.batch.open:
        ctx.batch.commit()  # hashing and copying a big database must not hold the write lock
    try:
        if head is not None and len(head) < HEAD_BYTES:  # the whole file
            digest = hashlib.sha256(head).hexdigest()
        else:
            digest = _sha256(candidate.real_path)
        companions = _companion_hashes(module.NAME, candidate.real_path)
    except OSError as exc:
        return _fail(result, candidate, ctx, f"cannot read: {exc}")
    if _unchanged_by_hash(known, digest, companions):
        try:
            _attempted(lambda: _touch(known, info, ctx), candidate, ctx)
        except _Failed as failed:
            return _fail(result, candidate, ctx, failed.reason)
        result.outcome, result.file_id = "unchanged", known.pk
        return result
    if ctx.uploaded:
        if digest in ctx.digests:
            _write_read_ahead(ctx)  # the same bytes earlier in this batch: written first
        ctx.digests.add(digest)
        path = candidate.logical_path
        try:
            twin = _attempted(
                lambda: _known_content(digest, companions, module.NAME, path, ctx), candidate, ctx
            )
        except _Failed as failed:
            return _fail(result, candidate, ctx, failed.reason)
        if twin is not None:
            result.outcome, result.file_id = "unchanged", twin.pk
            result.same_as = twin.display_name if twin.uploaded else twin.path
            return result
    if ahead:
        records, error = _parse_now(module, candidate.real_path)
        hashes = (digest, companions)
        ctx.read_ahead.append(_ReadAhead(candidate, module, info, hashes, result, records, error))
        if len(ctx.read_ahead) >= READ_AHEAD_FILES:
            _write_read_ahead(ctx)
        return result
    return _write_and_report(candidate, module, info, (digest, companions), ctx, result)


def _known_content(digest: str, companions: dict, format_name: str, path: str, ctx: _Context):
    """An upload whose bytes (and companions') an earlier upload at another path already
    has, read by the current parser and still holding all the runs it gave: that
    file, whose runs the upload's result links, rather than the same runs ingested
    again under the upload's path (a runs database's ids are only unique in it, so
    each copy of one gave its runs again). Uploads only, on both sides: an upload is
    kept as it came (its path is its content's), while a file read from a directory
    or a source may be written again, moved or deleted (a source that mirrors
    deletions takes its runs with it), and the upload's runs must not go with it.

    Asked of every upload that is not unchanged at its own path, a known one too (its
    saved file read again with other bytes): within one batch the second copy of some
    bytes is the first's twin whichever of the two paths is new, the first being
    written before the second looks (`ctx.digests`, by the caller). The runs it holds
    are those still in their source (`left_source_at` NULL): a file read again keeps
    the runs its earlier bytes gave as history. None when there is none.

    Read in a savepoint when the batch's transaction is open on PostgreSQL: a failed
    statement (a lock timeout) would abort the transaction, the batch's other files
    with it (SQLite's goes on)."""
    in_source = Q(runs__left_source_at__isnull=True)
    same = (
        TraceFile.objects.filter(
            sha256=digest, format=format_name, status=TraceFile.FileStatus.OK, uploaded=True
        )
        .exclude(path=path)
        .annotate(held=Count("runs", filter=in_source))
        .order_by("id")
    )
    wanted = sorted(companions.values())
    aside = ctx.batch.open and connection.vendor == "postgresql"
    with transaction.atomic() if aside else contextlib.nullcontext():
        twins = list(same[:20])
    for twin in twins:
        produced = twin.produced or {}
        current = (produced.get("parser_version") or 1) == parser_version(format_name)
        all_held = twin.held == (produced.get("runs") or 0)
        if current and all_held and sorted((twin.companions or {}).values()) == wanted:
            return twin
    return None


def _reads_ahead(module: ModuleType, path: Path, info: os.stat_result, head) -> bool:
    """A small file whose format reads it whole (`parsed_whole`), so its records
    may wait for their write."""
    if head is None or info.st_size > READ_AHEAD_BYTES or _snapshot_read(module):
        return False
    parsed_whole = getattr(module, "parsed_whole", None)
    return parsed_whole is not None and parsed_whole(path, head, info.st_size)


def _parse_now(module: ModuleType, path: Path) -> tuple[list[RunRecord], Exception | None]:
    """A small file's records (its steps still lazy), or what reading it raised,
    raised again when it is written."""
    try:
        return list(module.parse(path)), None
    except Exception as exc:  # reported as the write would have: see _write_and_report
        return [], exc


def _write_read_ahead(ctx: _Context) -> None:
    """Write the files read ahead: together, in one savepoint, their runs through one
    RunIndex (one look-up of the stored runs they may update, one write of the read
    models, their rows in one statement); if that fails, each in its own savepoint,
    read again, as any file, so that a bad file fails alone."""
    pending, ctx.read_ahead = ctx.read_ahead, []
    readable = [read for read in pending if read.error is None]
    together = len(readable) > 1 and _write_together(readable, ctx)
    for read in pending:
        if together and read.error is None:
            continue
        records = None if read.error is None else _raising(read.error)
        _write_and_report(
            read.candidate, read.module, read.info, read.hashes, ctx, read.result, records
        )
        ctx.batch.commit_if_due()


def _write_together(reads: list[_ReadAhead], ctx: _Context) -> bool:
    """Write these files in one savepoint; False (nothing written, their results
    as before) if any of them raised."""
    index = RunIndex()
    index.ids = ctx.batch.ids
    index.look_up([record for read in reads for record in read.records])
    rows: list[tuple[TraceFile, bool]] = []
    try:
        with ctx.batch.savepoint() as part:
            for read in reads:
                candidate, result = read.candidate, read.result
                known = ctx.known.get(candidate.logical_path)
                companions = read.hashes[1]
                trace_file = _file_row(
                    known, candidate, read.module.NAME, read.info, companions, ctx
                )
                runs = _FileRuns(candidate.logical_path, result, ctx.batch, index)
                runs.write(iter(read.records), trace_file, None)
                runs.settle(trace_file, new=known is None, deltas=part)
                produced = {name: result.held[name] for name in _PRODUCED}
                mtime_ns = _settled_mtime_ns(read.info, ctx)
                _claim_read(trace_file, mtime_ns, read.hashes[0], produced, read.module.NAME)
                rows.append((trace_file, known is not None))
            index.settle(part)  # the read models' changes, applied by the transaction
            _write_file_rows(rows)
    except Exception:  # one of them is bad: each is written alone, which tells which
        log.debug("writing %d files together failed; writing each alone", len(reads))
        for read in reads:
            _clear(read.result)
        return False
    for read, (trace_file, _stored) in zip(reads, rows, strict=True):
        read.result.outcome, read.result.file_id = "ingested", trace_file.pk
    return True


def _clear(result: FileResult) -> None:
    result.counts.clear()
    result.held.clear()
    result.runs_added.clear()
    result.runs_updated.clear()
    result.runs_unchanged.clear()


def _raising(error: Exception) -> Iterator[RunRecord]:
    raise error
    yield  # a generator: raises where the records are read, inside the file's savepoint


def _write_and_report(
    candidate, module, info, hashes, ctx: _Context, result, records=None
) -> FileResult:
    """Write the file; one that met another writer (a deadlock, a serialization
    failure, SQLite locked) is rolled back and written again, a few times."""
    earlier: dict[int, str] = {}  # what the attempts before wrote (_FileRuns.before)

    def again() -> None:
        _kept(result, earlier)
        _clear(result)
        # A database's runs may have committed in part: its row with them.
        ctx.known.update(known_files([candidate.logical_path]))

    try:
        trace_file = _attempted(
            lambda: _write_file(candidate, module, info, hashes, ctx, result, records, earlier),
            candidate,
            ctx,
            again=again,
        )
    except ParseError as exc:
        result.counts.clear()
        return _fail(result, candidate, ctx, _retry_hint(str(exc), info))
    except _Failed as failed:
        result.counts.clear()
        return _fail(result, candidate, ctx, failed.reason)
    result.outcome, result.file_id = "ingested", trace_file.pk
    return result


def _kept(result: FileResult, earlier: dict[int, str]) -> None:
    """Note in `earlier` (run id: "added" or "updated") the runs an attempt at the
    file wrote: the next attempt reports them so, also those it finds unchanged
    (their part of a database was committed before the attempt failed)."""
    earlier.update(dict.fromkeys(result.runs_updated, "updated"))
    earlier.update(dict.fromkeys(result.runs_added, "added"))


class _Failed(Exception):
    """A file's write that failed for good; `reason` says why, for its result."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _attempted(
    write: Callable[[], T], candidate, ctx: _Context, *, again: Callable[[], None] | None = None
) -> T:
    """`write()` (of this file's), tried again while it only met another writer and may
    succeed now (`_may_write_again`: after `again()`, and `batches.backoff`), up to
    `batches.ATTEMPTS` times. Otherwise raises _Failed, logged with its traceback: a
    bug or a database error fails the file, never the batch. A ParseError passes."""
    attempt = 0
    while True:
        try:
            return write()
        except ParseError:
            raise
        except Exception as exc:
            attempt += 1
            if _may_write_again(exc, ctx) and attempt < batches.ATTEMPTS:
                log.info("ingest of %s met another writer (%s); again", candidate.display_name, exc)
                if again is not None:
                    again()
                time.sleep(batches.backoff(attempt - 1))
                continue
            log.exception("ingest of %s failed", candidate.display_name)
            message = f"internal error while ingesting ({type(exc).__name__}: {exc})"
            if attempt > 1:
                message += f" (tried {attempt} times)"
            raise _Failed(message) from exc


def _may_write_again(exc: Exception, ctx: _Context) -> bool:
    """Whether writing the file again may succeed: it failed only because another
    writer held what it needed, and its savepoint rolled back alone (on SQLite,
    only the batch's BEGIN can find the database locked: nothing of it is open)."""
    return batches.writers_met(exc) or (batches.sqlite_locked(exc) and not ctx.batch.open)


def _write_file(
    candidate, module, info, hashes, ctx: _Context, result, records=None, earlier=None
) -> TraceFile:
    """Write the file's runs in one savepoint or, for a format whose runs stand whole
    on their own (read from a snapshot: a big database), in several, committed as the
    batch falls due. The file's row claims it was read (its hash and mtime, what it
    holds) only with the last run: a file cut short (a crash) is read again. A file
    written in one savepoint has its row written once, after its runs (foreign keys
    are checked at commit). `earlier`: what the attempts before it wrote (`_kept`)."""
    digest, companions = hashes
    read_ahead = records is not None
    records = iter(records if read_ahead else module.parse(candidate.real_path))
    until = None
    in_parts = _snapshot_read(module)
    if in_parts:
        records, until = _first_run_read(records), ctx.batch.due
    runs = _FileRuns(candidate.logical_path, result, ctx.batch, before=earlier)
    records = runs.index.ahead(records)  # stored runs looked up many at a time
    known = ctx.known.get(candidate.logical_path)
    trace_file = None
    while True:
        with ctx.batch.savepoint() as part:
            if trace_file is None:
                trace_file = _file_row(known, candidate, module.NAME, info, companions, ctx)
                if in_parts:  # its runs may commit before it is whole
                    _write_file_row(trace_file, known is not None, _columns(trace_file))
            finished = runs.write(records, trace_file, until)
            runs.index.settle(part)  # the read models' changes, gathered in this savepoint
            if finished:
                runs.settle(trace_file, new=known is None, deltas=part)
                produced = {name: result.held[name] for name in _PRODUCED}
                mtime_ns = _settled_mtime_ns(info, ctx)
                _claim_read(trace_file, mtime_ns, digest, produced, module.NAME)
                if in_parts:
                    _write_file_row(trace_file, True, _CLAIMS)
                else:
                    _write_file_row(trace_file, known is not None, _columns(trace_file))
                return trace_file
        ctx.batch.commit_if_due()


_PRODUCED = ("runs", "steps", "calls", "links", "logs")


def _snapshot_read(module: ModuleType) -> bool:
    return getattr(module, "SNAPSHOT_READ", False)


def _first_run_read(records: Iterator[RunRecord]) -> Iterator[RunRecord]:
    """The records, the first one read now, before the write lock is taken: that
    is when the parser copies the database and prepares its copy (seconds)."""
    for first in records:
        return itertools.chain([first], records)
    return iter(())


class _FileRuns:
    """The runs of one file as they are written, kept across its savepoints."""

    def __init__(
        self,
        logical_path: str,
        result: FileResult,
        batch: WriteBatch,
        index: RunIndex | None = None,
        before: dict[int, str] | None = None,
    ):
        self.logical_path = logical_path
        # The runs earlier attempts at the file wrote ("added" or "updated"), reported
        # so: those of a database's parts committed before it met another writer and
        # was written again are unchanged now.
        self.before = before or {}
        self.result = result
        self.index = index or RunIndex()
        # The batch's id allocators, valid as long as its transaction (RunIndex's
        # own would cost each file its id queries, and outlive a commit).
        self.index.ids = batch.ids
        self.seen: set[int] = set()
        # A run the file gives twice (duplicate rows) is counted once, as last written.
        self.written: dict[int, Counter] = {}
        self.held: dict[int, Counter] = {}

    def write(
        self, records: Iterator[RunRecord], trace_file: TraceFile, until: Callable | None
    ) -> bool:
        """Write runs until the file ends (True) or `until()` asks for a commit first."""
        for record in records:
            self._write(record, trace_file)
            if until is not None and until():
                return False
        return True

    def _write(self, record: RunRecord, trace_file: TraceFile) -> None:
        result = self.result
        origin = self.logical_path if record.origin else ""
        outcome = write_run(record, source_file=trace_file, origin=origin, index=self.index)
        action, earlier = outcome.action, self.before.get(outcome.run_id)
        if earlier == "added" or (earlier and action == "unchanged"):
            action = earlier  # as the attempt that wrote it (and was kept) said
        again = outcome.run_id in self.seen
        self.seen.add(outcome.run_id)
        if action in ("added", "updated") or not again:
            self.held[outcome.run_id] = outcome.counts  # a repeat left as written keeps its counts
        if action == "added":
            result.runs_added.append(outcome.run_id)
        elif action == "updated":
            if not again:
                result.runs_updated.append(outcome.run_id)
            elif outcome.run_id in result.runs_unchanged:  # rare: only for a repeated run
                result.runs_unchanged.remove(outcome.run_id)
                result.runs_updated.append(outcome.run_id)
        else:
            if not again:
                result.runs_unchanged.append(outcome.run_id)
            return
        self.written[outcome.run_id] = outcome.counts

    def settle(self, trace_file: TraceFile, *, new: bool, deltas: ReadModelDeltas) -> None:
        """The whole file is read: count what it gave and holds, and settle the runs
        it no longer holds (never earlier: a run not seen yet may come later); what
        deleting them takes off the read models is gathered into `deltas`."""
        result = self.result
        for counts in self.written.values():
            result.counts["runs"] += 1
            result.counts.update(counts)
        result.held["runs"] = len(self.held)
        for counts in self.held.values():
            result.held.update(counts)
        _settle_runs_not_seen(
            trace_file, self.seen, written=set(self.written), new=new, deltas=deltas
        )


def _file_row(known: KnownFile | None, candidate, format_name, info, companions, ctx) -> TraceFile:
    """The file's row as being read, not written yet: without its hash and mtime_ns
    (the fast path's proof that it is unchanged) until `_claim_read()`."""
    now = timezone.now()
    trace_file = TraceFile(
        path=candidate.logical_path,
        display_name=candidate.display_name[:500],
        format=format_name,
        sha256="",
        companions=companions,
        status=TraceFile.FileStatus.OK,
        error="",
        uploaded=ctx.uploaded,
        first_seen_at=now,
        ingested_at=now,
        checked_at=now,
    )
    _set_stat(trace_file, info)
    trace_file.mtime_ns = None
    if known is not None:
        trace_file.pk = known.pk
        trace_file.source_id = ctx.source.pk if ctx.source else known.source_id
    else:
        trace_file.pk = ctx.batch.ids[TraceFile].next()
        trace_file.source = ctx.source
    return trace_file


# What an ingest writes over a stored file row: all but its path and first sighting
# (and its upload mark, kept once set); `produced` with the claims only.
_READ_COLUMNS = (
    "display_name", "format", "size", "mtime", "mtime_ns", "sha256", "companions", "status",
    "error", "source_id", "ingested_at", "checked_at",
)  # fmt: skip
_CLAIMS = ("mtime_ns", "sha256", "produced")


def _columns(trace_file: TraceFile) -> tuple[str, ...]:
    columns = _READ_COLUMNS + (("produced",) if trace_file.sha256 else ())
    return columns + (("uploaded",) if trace_file.uploaded else ())


def _write_file_rows(rows: list[tuple[TraceFile, bool]]) -> None:
    """The rows of files written together: the new ones inserted in one statement."""
    new = []
    for trace_file, stored in rows:
        if stored:
            _write_file_row(trace_file, True, _columns(trace_file))
        else:
            new.append(trace_file)
    if not new:
        return
    plan = _FILE_ROW_PLANS.get(connection.vendor)
    if plan is None:
        plan = _FILE_ROW_PLANS[connection.vendor] = InstancePlan(TraceFile)
    pairs = list(zip(plan.adapters, plan.attnames, strict=True))
    plan.insert_rows(
        [[adapt(getattr(trace_file, name)) for adapt, name in pairs] for trace_file in new]
    )


_FILE_ROW_PLANS: dict[str, InstancePlan] = {}


def _write_file_row(trace_file: TraceFile, stored: bool, columns: tuple[str, ...]) -> None:
    """Insert the file's row, or update these columns of the stored one: one
    statement either way (a row deleted since the batch listed it is inserted again)."""
    if stored:
        values = {name: getattr(trace_file, name) for name in columns}
        if TraceFile.objects.filter(pk=trace_file.pk).update(**values):
            return
    insert_instances([trace_file])


def _claim_read(
    trace_file: TraceFile, mtime_ns: int | None, digest: str, produced: dict, format_name
) -> None:
    """The file's row says it was read: its bytes' hash and what they gave, and the
    mtime that stands for them (None: none does yet, `_settled_mtime_ns`)."""
    trace_file.mtime_ns = mtime_ns
    trace_file.sha256 = digest
    trace_file.produced = {**produced, "parser_version": parser_version(format_name)}


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
        main, _logical(main_real), storable(str(main)), True, resolved=main_real
    )
    main_result = None
    _write_read_ahead(ctx)
    if main_candidate.logical_path not in ctx.done:
        ctx.done.add(main_candidate.logical_path)
        if main_candidate.logical_path not in ctx.known:  # not one of the batch's files
            ctx.known.update(known_files([main_candidate.logical_path]))
        main_result = _ingest_candidate(main_candidate, ctx)
        _write_read_ahead(ctx)
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
    try:
        with ctx.batch.savepoint():
            known = ctx.known.get(candidate.logical_path)
            trace_file = _file_row(known, candidate, module.NAME, info, {}, ctx)
            produced = {"companion_of": main_candidate.display_name}
            # Its bytes are hashed with its main file's each time that is read (the
            # main's row has them): its own mtime need not stand for them.
            _claim_read(trace_file, info.st_mtime_ns, digest, produced, module.NAME)
            _write_file_row(trace_file, known is not None, _columns(trace_file))
    except Exception as exc:  # a database error (a lock timeout) must not stop the batch
        log.exception("recording %s failed", candidate.display_name)
        message = f"internal error while ingesting ({type(exc).__name__}: {exc})"
        return _fail(result, candidate, ctx, message)
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


def _settled_mtime_ns(info: os.stat_result, ctx: _Context) -> int | None:
    """The mtime the fast path may take the file's bytes by, or None: modified too
    shortly before it was read (RACY_NS) to tell a later write of the same size."""
    if ctx.started_ns - info.st_mtime_ns < RACY_NS:
        return None
    return info.st_mtime_ns


def _touch(known: KnownFile, info: os.stat_result, ctx: _Context) -> None:
    """Unchanged, though its mtime moved: the new stat is what the fast path compares."""
    with ctx.batch.savepoint():
        TraceFile.objects.filter(pk=known.pk).update(
            size=info.st_size,
            mtime=datetime.fromtimestamp(info.st_mtime, tz=UTC),
            mtime_ns=_settled_mtime_ns(info, ctx),
            checked_at=timezone.now(),
        )


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


def _fail(result, candidate, ctx: _Context, reason: str) -> FileResult:
    """Record a failed file; the runs it gave before, if any, stay as they were
    (those of a database that committed some of its runs before failing too). One
    whose failure cannot be recorded either (the database as locked as for its
    write) is reported failed all the same, with both reasons, and no row."""
    ctx.failed[candidate.logical_path] = reason
    message = _cut(storable(f"{candidate.display_name}: {reason}").replace("\x00", "\\x00"))
    try:
        file_id = _attempted(
            lambda: _record_failure(result, candidate, ctx, message), candidate, ctx
        )
    except _Failed as failed:
        file_id = None
        message = _cut(f"{message}; the failure could not be recorded: {failed.reason}")
    result.outcome, result.error, result.file_id = "failed", message, file_id
    return result


def _cut(message: str) -> str:
    if len(message) > MAX_ERROR:
        return message[: MAX_ERROR - 1] + "…"
    return message


def _record_failure(result, candidate, ctx: _Context, message: str) -> int:
    """The failed file's row, with the message: its id."""
    with ctx.batch.savepoint():
        # Read again: the row may be new since the batch began, or rolled back.
        trace_file = TraceFile.objects.filter(path=candidate.logical_path).first()
        now = timezone.now()
        new = trace_file is None
        if new:
            trace_file = TraceFile(path=candidate.logical_path, first_seen_at=now)
            # An id of the batch's: on SQLite they are handed out from max(id) + 1.
            trace_file.pk = ctx.batch.ids[TraceFile].next()
        trace_file.display_name = candidate.display_name[:500]
        trace_file.format = trace_file.format or result.format
        trace_file.status = TraceFile.FileStatus.ERROR
        trace_file.error = message
        trace_file.checked_at = now
        trace_file.source = ctx.source or trace_file.source
        trace_file.uploaded = ctx.uploaded or trace_file.uploaded
        with contextlib.suppress(OSError):
            _set_stat(trace_file, candidate.real_path.stat())
        trace_file.save(force_insert=new)
    return trace_file.pk
