"""Background ingestion: uploads and source rescans run as tasks (Django's task
API via django-tasks, database backend), so the request that starts one
returns at once and the page follows the job's progress."""

from __future__ import annotations

import functools
import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_tasks import task

from .ingest import parallel
from .ingest.loader import ingest_paths
from .ingest.report import FileResult, IngestReport
from .models import IngestClaim, IngestJob, TraceSource

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 0.5
# Helper tasks queued for a shared job (one that finds the job's shares gone costs a query).
SHARE_HELPERS = 3


def enqueue_ingest(
    paths: list[str],
    *,
    kind: str,
    source: TraceSource | None = None,
    uploaded: bool = False,
    display_names: dict[str, str] | None = None,
) -> IngestJob:
    """Record a job and queue it once the current transaction commits (a worker
    must never pick up a job whose row it cannot see yet)."""
    job = IngestJob.objects.create(
        kind=kind,
        paths=[str(path) for path in paths],
        display_names=display_names or {},
        source=source,
        uploaded=uploaded,
    )
    if settings.TRACER_INGEST_IN_BACKGROUND:
        transaction.on_commit(lambda: _enqueue(job))
    else:
        _enqueue(job)
        job.refresh_from_db()
    return job


def _enqueue(job: IngestJob) -> None:
    result = run_ingest_job.enqueue(job.pk)
    IngestJob.objects.filter(pk=job.pk).update(task_id=str(result.id))


@task(queue_name="ingest")
def run_ingest_job(job_id: int) -> dict:
    job = IngestJob.objects.get(pk=job_id)
    if job.finished:
        return job.summary
    IngestJob.objects.filter(pk=job.pk).update(status="running", started_at=timezone.now())
    try:
        if job.kind == IngestJob.Kind.RESCAN and job.source_id:
            summary, results = _rescan(job)
        else:
            summary, results = _ingest(job)
    except Exception as exc:  # the job must end in a state the page can show
        log.exception("ingest job %s failed", job.pk)
        IngestJob.objects.filter(pk=job.pk).update(
            status="failed", finished_at=timezone.now(), error=f"{type(exc).__name__}: {exc}"
        )
        raise
    IngestJob.objects.filter(pk=job.pk).update(
        status="done",
        finished_at=timezone.now(),
        summary=summary,
        results=results,
        files_done=len(results) or job.files_total,
        current="",
    )
    return summary


def _ingest(job: IngestJob) -> tuple[dict, list]:
    options = {"uploaded": job.uploaded, "display_names": job.display_names}
    report = None
    if settings.TRACER_INGEST_IN_BACKGROUND:
        report = _ingest_shared(job, options)
    if report is None:
        report = ingest_paths(job.paths, progress=_progress_recorder(job.pk), **options)
    return report.summary(), [result.as_dict() for result in report.files]


def _ingest_shared(job: IngestJob, options: dict) -> IngestReport | None:
    """A job of many files, read by this task and helper tasks that other
    db_workers run; None (nothing done) when the job is too small to share."""
    return _shared(job, parallel.plan_batch(job.paths, workers=1 + SHARE_HELPERS), options)


def _shared(job: IngestJob, plan: parallel.Plan, options: dict) -> IngestReport | None:
    """Read the batch of `plan` with helper tasks, or None (its shares deleted, nothing
    read) when it has too few files to be worth sharing."""
    if plan.files < settings.TRACER_INGEST_SHARE_FROM:
        IngestClaim.objects.filter(batch=plan.batch).delete()
        return None
    with parallel.discarded_on_error(plan.batch):
        IngestJob.objects.filter(pk=job.pk).update(files_total=plan.files)
        for _ in range(SHARE_HELPERS):
            run_ingest_share.enqueue(plan.batch, options)
        shares = IngestClaim.objects.filter(batch=plan.batch)
        while shares.exclude(state=IngestClaim.ClaimState.DONE).exists():
            # The shares left, and those of a helper that died (after its lease).
            parallel.work(plan.batch, after_share=lambda: _record_shares(job.pk, shares), **options)
            _record_shares(job.pk, shares)
            time.sleep(PROGRESS_EVERY_SECONDS)
        return parallel.gather(plan.batch, plan.kept, **options)


def _record_shares(job_id: int, shares) -> None:
    done = shares.filter(state=IngestClaim.ClaimState.DONE).values_list("paths", flat=True)
    IngestJob.objects.filter(pk=job_id).update(files_done=sum(len(paths) for paths in done))


@task(queue_name="ingest")
def run_ingest_share(batch: str, options: dict) -> int:
    """Help a shared ingest job: read shares of its batch until none is left."""
    return parallel.work(batch, **options)


def _rescan(job: IngestJob) -> tuple[dict, list]:
    from .sources import ScanInProgress, rescan

    try:
        return rescan(job.source, read=functools.partial(_read_found, job)), []
    except ScanInProgress as exc:
        return {"busy": str(exc)}, []


def _read_found(job: IngestJob, files: list, known: dict, source: TraceSource) -> IngestReport:
    """The files a source's scan found changed: shared with helper tasks, as a big
    upload is, when they are many (a new source of thousands of files)."""
    from .sources import read_here

    report = None
    if settings.TRACER_INGEST_IN_BACKGROUND and len(files) >= settings.TRACER_INGEST_SHARE_FROM:
        # Each file once, shown by the path the scan found it at (a link's, not its target's).
        shown = {c.resolved or str(c.real_path): c.display_name for c in reversed(files)}
        paths = list(dict.fromkeys(c.resolved or str(c.real_path) for c in files))
        names = {real: name for real, name in shown.items() if name != real}
        options = {"source_id": source.pk, "display_names": names}
        plan = parallel.plan_batch(paths, workers=1 + SHARE_HELPERS, found=True)
        report = _shared(job, plan, options)
    return report if report is not None else read_here(files, known, source)


def job_report(job: IngestJob) -> IngestReport:
    """A finished job's results as the loader's report."""
    return IngestReport(files=[FileResult.from_dict(item) for item in job.results])


def _progress_recorder(job_id: int):
    """Write progress to the job row at most twice a second."""
    last = [0.0]

    def record(done: int, total: int, name: str) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < PROGRESS_EVERY_SECONDS:
            return
        last[0] = now
        IngestJob.objects.filter(pk=job_id).update(
            files_done=done, files_total=total, current=name[-500:]
        )

    return record
