"""Parallel ingest: several workers on one database split the files of one batch.

The files are listed once (directories walked) and written as shares of a few
files each (IngestClaim rows). Each worker takes the next share in its own short
transaction, with `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite's
single writer serialises the same transaction), reads it with the loader, and
writes the results on the share. A share whose worker stopped refreshing it for a
lease is taken again. The process that planned the batch gathers the results into
one report.

`ingest --jobs N` starts N - 1 worker processes and works beside them.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from traces.models import IngestClaim, TraceSource

from . import parallel_worker
from .candidates import _logical, _resolved, _walk, is_zip, storable
from .loader import ingest_paths
from .report import FileResult, IngestReport

log = logging.getLogger(__name__)

# A share not refreshed for this long was left by a worker that died.
LEASE = timedelta(minutes=5)
# Workers refresh the shares they hold this often (a share can be one file that
# takes many minutes to read).
HEARTBEAT_EVERY = LEASE / 5
# Shares are small enough that workers finish close together, big enough that
# taking one costs little beside reading it.
SHARES_PER_WORKER = 8
MAX_SHARE = 50
# A directory of this many files or fewer stays in one share (a workflow.db is read
# with the events.db beside it: apart, two workers would both read it).
SMALL_DIRECTORY = 10
# A batch none of whose shares moved for this long was left by a planner that died.
ABANDONED_AFTER = LEASE * 12

Share = IngestClaim.ClaimState


def ingest_in_parallel(
    paths: Iterable[str | Path], *, jobs: int, format: str | None = None
) -> IngestReport:
    """What `ingest_paths(paths)` does, by `jobs` processes: this one and jobs - 1
    started for the purpose (each its own connection to the same database)."""
    plan = plan_batch(paths, workers=jobs)
    batch = plan.batch
    options = {"format": format}
    with discarded_on_error(batch):
        _work_with_helpers(batch, jobs - 1, options)
        work(batch, lease=timedelta(0), **options)  # what a worker that died left
        return gather(batch, plan.kept, **options)


def _work_with_helpers(batch: str, count: int, options: dict) -> None:
    database = connection.settings_dict["NAME"]
    spawn = multiprocessing.get_context("spawn")  # no connection or lock is inherited
    helpers = [
        spawn.Process(target=parallel_worker.main, args=(batch, database, options), daemon=True)
        for _ in range(count)
    ]
    for helper in helpers:
        helper.start()
    try:
        work(batch, **options)
    finally:
        for helper in helpers:
            helper.join()
    for helper in helpers:
        if helper.exitcode:
            log.warning("ingest worker %s exited with %s", helper.pid, helper.exitcode)


class Plan(NamedTuple):
    batch: str
    # (path, walked) of the files kept out of the shares: names that are not UTF-8
    # cannot be stored, so the planner reads them itself.
    kept: list[tuple[str, bool]]
    files: int


def plan_batch(paths: Iterable[str | Path], *, workers: int, found: bool = False) -> Plan:
    """List the files of `paths` once and write them as shares of a new batch
    (first deleting the shares of batches abandoned long ago). `found`: the paths
    are files a directory walk found already (a source's scan), shared as its own."""
    prune_abandoned()
    batch = uuid.uuid4().hex
    listed, kept = [], []
    for path, walked in ((str(p), True) for p in paths) if found else _listed(paths):
        (listed if _is_utf8(path) else kept).append((path, walked))
    size = share_size(len(listed), workers)
    shares = [
        IngestClaim(batch=batch, paths=group, walked=walked)
        for walked, group in _groups(listed, size)
    ]
    IngestClaim.objects.bulk_create(shares, batch_size=500)
    return Plan(batch, kept, len(listed))


def share_size(files: int, workers: int) -> int:
    return max(1, min(MAX_SHARE, math.ceil(files / (workers * SHARES_PER_WORKER))))


def _listed(paths: Iterable[str | Path]) -> Iterator[tuple[str, bool]]:
    """Each file a directory walk finds (walked), and each other path as given (a
    file or a zip archive, read whole by one worker); a file found again (named
    twice, in a directory named too, or through a link) left out as the loader
    leaves it, or two workers would read it at once and the report count it twice.
    A zip archive named is read (its members) even if a walk found it too (which
    leaves it out): its names are apart."""
    seen: set[str] = set()
    archives: set[str] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for candidate in _walk(path):
                if _first_time(candidate.logical_path, seen):
                    yield str(candidate.real_path), True
        elif _first_time(_logical(_resolved(path)), archives if is_zip(path) else seen):
            yield str(raw), False


def _first_time(logical_path: str, seen: set[str]) -> bool:
    if logical_path in seen:
        return False
    seen.add(logical_path)
    return True


def _groups(listed: list[tuple[str, bool]], size: int) -> Iterator[tuple[bool, list[str]]]:
    """Consecutive paths of the same kind, about `size` at a time, in their order;
    a small directory's files in one share."""
    group: list[str] = []
    kind = None
    for walked, folder in _folders(listed):
        if group and (walked != kind or len(group) + len(folder) > size):
            yield kind, group
            group = []
        kind = walked
        step = max(size, SMALL_DIRECTORY) if len(folder) <= SMALL_DIRECTORY else size
        for start in range(0, len(folder), step):
            if group and len(group) + len(folder[start:]) > step:
                yield kind, group
                group = []
            group.extend(folder[start : start + step])
    if group:
        yield kind, group


def _folders(listed: list[tuple[str, bool]]) -> Iterator[tuple[bool, list[str]]]:
    """The walked files of each directory together; each path given alone."""
    folder: list[str] = []
    current = None
    for path, walked in listed:
        key = os.path.dirname(path) if walked else None
        if folder and (key is None or key != current):
            yield current is not None, folder
            folder = []
        current = key
        folder.append(path)
    if folder:
        yield current is not None, folder


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- the end of a batch -----------------------------------------------------------------------


def prune_abandoned(*, now: datetime | None = None) -> int:
    """Delete the shares of every batch none of whose shares was planned, taken,
    refreshed or finished for ABANDONED_AFTER: its planner died (killed, or its
    machine lost) before gathering it, and nobody will. How many shares went."""
    cutoff = (now or timezone.now()) - ABANDONED_AFTER
    alive = IngestClaim.objects.filter(Q(created_at__gte=cutoff) | Q(taken_at__gte=cutoff))
    deleted, _ = IngestClaim.objects.exclude(batch__in=alive.values("batch")).delete()
    return deleted


@contextmanager
def discarded_on_error(batch: str) -> Iterator[None]:
    """The batch's shares deleted if the block fails or is interrupted (Ctrl-C):
    its planner will not gather them. Workers still reading a share find it gone."""
    try:
        yield
    except BaseException:
        IngestClaim.objects.filter(batch=batch).delete()
        raise


# --- a worker --------------------------------------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def take_share(batch: str, worker: str, *, lease: timedelta = LEASE) -> IngestClaim | None:
    """The batch's next share for `worker`: the first not taken, or taken by a
    worker that has not refreshed it for `lease`. Never one another worker holds."""
    cutoff = timezone.now() - lease
    with transaction.atomic():
        share = (
            IngestClaim.objects.select_for_update(skip_locked=True)
            .filter(batch=batch)
            .filter(Q(state=Share.TODO) | Q(state=Share.TAKEN, taken_at__lt=cutoff))
            .order_by("id")
            .first()
        )
        if share is None:
            return None
        share.state, share.worker, share.taken_at = Share.TAKEN, worker, timezone.now()
        share.save(update_fields=["state", "worker", "taken_at"])
    return share


def work(
    batch: str,
    *,
    worker: str | None = None,
    lease: timedelta = LEASE,
    after_share: Callable[[], None] | None = None,
    **options,
) -> int:
    """Take and read the batch's shares until none is left; how many this worker read.
    `options` go to `ingest_paths` (format, uploaded, display_names; source_id: the
    source the files are read for)."""
    worker = worker or worker_name()
    options = _loader_options(options)
    done = 0
    while (share := take_share(batch, worker, lease=lease)) is not None:
        with _heartbeat(share.pk, worker):
            report = ingest_paths(share.paths, walked=share.walked, **options)
        results = [result.as_dict() for result in report.files]
        # A share taken again meanwhile (this worker was thought dead) is the other's now.
        IngestClaim.objects.filter(pk=share.pk, worker=worker).update(
            state=Share.DONE, results=results, taken_at=timezone.now()
        )
        done += 1
        if after_share:
            after_share()
    return done


@contextmanager
def _heartbeat(share_id: int, worker: str):
    """Refresh the share's taken_at from a thread (its own connection) while the
    worker reads it, so that a long file does not pass for a dead worker."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(HEARTBEAT_EVERY.total_seconds()):
                try:
                    IngestClaim.objects.filter(pk=share_id, worker=worker).update(
                        taken_at=timezone.now()
                    )
                except DatabaseError as exc:  # SQLite busy with the ingest: next beat
                    log.info("heartbeat of share %s missed: %s", share_id, exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"heartbeat-{share_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _loader_options(options: dict) -> dict:
    """`ingest_paths`' options from a batch's (kept as JSON in a task's arguments)."""
    if "source_id" not in options:
        return options
    options = dict(options)
    source_id = options.pop("source_id")
    options["source"] = TraceSource.objects.filter(pk=source_id).first()
    return options


# --- the planner's report ----------------------------------------------------------------------


def gather(batch: str, kept: list[tuple[str, bool]], **options) -> IngestReport:
    """The batch's report, in the order of its files; the batch's shares deleted.

    A file that failed in a worker is read once more, alone: two workers can write
    the same run (a snapshot and its finished file) or the same companion at
    once, and the later write then fails on a unique key though the file is good."""
    report = IngestReport()
    options = _loader_options(options)
    for share in IngestClaim.objects.filter(batch=batch).order_by("id"):
        for item in share.results:
            report.files.extend(_again_if_failed(item, share, options))
    for path, walked in kept:
        report.files.extend(ingest_paths([path], walked=walked, **options).files)
    IngestClaim.objects.filter(batch=batch).delete()
    return report


def _again_if_failed(item: dict, share: IngestClaim, options: dict) -> list[FileResult]:
    names = options.get("display_names") or {}
    given = {storable(names.get(path, path)): path for path in share.paths}
    path = given.get(item["path"])
    if item["outcome"] != "failed" or path is None:  # a zip's member: its zip is not re-read
        return [FileResult.from_dict(item)]
    return ingest_paths([path], walked=share.walked, **options).files
