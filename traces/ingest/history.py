"""Runs that left their source: runs a re-read file no longer holds, and runs of
files a scan no longer finds, are kept as history (marked) or deleted."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import transaction
from django.utils import timezone

from traces.models import Run, TraceFile, TraceSource

from .read_models import ReadModelDeltas
from .store import delete_runs


def _settle_runs_not_seen(
    trace_file: TraceFile,
    seen: set[int],
    *,
    written: set[int] | None = None,
    new: bool = False,
    deltas: ReadModelDeltas | None = None,
) -> None:
    """Runs this file gave before and no longer holds (greentic's trace.json replaced by
    the next invocation, rows removed by a database's retention) are the history: kept,
    marked as having left their source, unless the source mirrors deletions. Runs it
    holds again are back in it, also those the store did not rewrite (unchanged, kept).

    The diff is made in Python and written in chunks: an `IN` list of every run of a
    big database would pass SQLite's limit of 32,766 parameters.

    `written`: the runs the store just wrote for this file (already its own, in its
    source); `new`: the file's row was created by this read, so it had no runs (a
    file read for the first time, most of a directory of small files, costs no query);
    `deltas`: where runs deleted put what they take off the read models (the file's
    savepoint's), else applied now."""
    own = {}
    if not new:
        own = dict(Run.objects.filter(source_file=trace_file).values_list("pk", "left_source_at"))
    _settle_left([pk for pk in own if pk not in seen], trace_file.source, own, deltas)
    # A run seen here whose row names another file (the same greentic bytes at another
    # path, a traceos trace in two cumulative dumps) or that had left: this file holds
    # it now, so the other file's next version no longer speaks for it.
    written = written or set()
    back = [pk for pk in seen if (pk not in own or own[pk] is not None) and pk not in written]
    for chunk in _chunks(back):
        Run.objects.filter(pk__in=chunk).update(left_source_at=None, source_file=trace_file)


def _settle_left(gone: list[int], source: TraceSource | None, left_at: dict, deltas=None) -> None:
    """Runs no longer in their source: deleted if the source mirrors deletions, else
    marked (the first time they left stays)."""
    if source is not None and source.mirror_deletions:
        for chunk in _chunks(gone):
            delete_runs(chunk, deltas)
        return
    now = timezone.now()
    newly_gone = [pk for pk in gone if left_at.get(pk) is None]
    for chunk in _chunks(newly_gone):
        Run.objects.filter(pk__in=chunk).update(left_source_at=now)


def settle_vanished_files(
    source: TraceSource, scanned_paths: set[str], held: int | None = None
) -> int:
    """After a scan: the source's files that are no longer there (a trace dir cleaned
    up, a rotated dump) took their runs out of the source. Returns how many runs that
    newly concerned.

    `held`: how many of the scanned paths are known to be the source's files, read
    without error. A source with no more files than that lost none, and its paths
    (10,000 rows for a big directory) are not read."""
    files = TraceFile.objects.filter(source=source, status=TraceFile.FileStatus.OK)
    if held is not None and files.count() <= held:
        return 0
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
