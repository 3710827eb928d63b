"""The unified trace model: every format is ingested into these tables.

TraceFile (what was read) → Run → Step (a tree) → Call; EntityLink ties a step
to a business entity; LogEntry is a run's log, optionally on a step.
Summaries the lists need (step counts by status, child counts, whether a
subtree holds a failure) are computed at ingest, so no page aggregates a
million rows per request.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from traces.causes import NORMALISED_MAX


class KeysetIndex(models.Index):
    """An index whose DESC columns that can be NULL put the NULLs last on every
    database, as the keyset lists read them (traces.pagination: `DESC NULLS LAST`,
    backwards `ASC NULLS FIRST`). SQLite's DESC already does; PostgreSQL's DESC puts
    NULLs first, so there the column is written `DESC NULLS LAST`: one index serves
    both databases' order, where PostgreSQL used to carry a NULLS LAST twin of it
    (0004, 0009, 0013, 0020; dropped by 0027_index_twins). Only for an order read
    newest first (and its previous pages): a list that is also sorted oldest first
    with NULLs last (ASC NULLS LAST) needs PostgreSQL's plain DESC index for that
    direction, walked backwards (the runs list's listed_at and duration_ms)."""

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor != "postgresql" or self.expressions:
            return super().create_sql(model, schema_editor, using=using, **kwargs)
        fields = [model._meta.get_field(name) for name, _ in self.fields_orders]
        suffixes = [
            f"{order} NULLS LAST" if order == "DESC" and field.null else order
            for field, (_, order) in zip(fields, self.fields_orders, strict=True)
        ]
        return schema_editor._create_index_sql(
            model,
            fields=fields,
            name=self.name,
            using=using,
            db_tablespace=self.db_tablespace,
            col_suffixes=suffixes,
            opclasses=self.opclasses,
            condition=self._get_condition_sql(model, schema_editor),
            include=[model._meta.get_field(name).column for name in self.include],
            **kwargs,
        )


class Format(models.TextChoices):
    DUCKFLUX = "duckflux", "duckflux"
    GREENTIC = "greentic", "greentic"
    TRACEOS = "traceos", "traceos"
    RUNS = "runs", "runs"
    WORKFLOW = "workflow", "workflow"
    OTLP = "otlp", "otlp"


class Status(models.TextChoices):
    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    SKIPPED = "skipped", "skipped"
    CANCELLED = "cancelled", "cancelled"


class TraceSource(models.Model):
    """A directory or database on the server the site rescans (inside the allowed roots)."""

    path = models.CharField(max_length=1000, unique=True)
    label = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    rescan_every = models.DurationField(
        null=True, blank=True, help_text="Rescan on this schedule; empty = only on demand."
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_scan_started_at = models.DateTimeField(null=True, blank=True)
    last_scan_finished_at = models.DateTimeField(null=True, blank=True)
    last_scan_report = models.JSONField(default=dict, blank=True)
    files_found = models.PositiveIntegerField(default=0)
    files_failed = models.PositiveIntegerField(default=0)
    # Off (the default): a run its source no longer holds is kept and marked as having
    # left it; the dashboard is the history. On: such runs are deleted, as the source did.
    mirror_deletions = models.BooleanField(
        default=False,
        help_text="Delete runs that the source no longer holds (default: keep them, marked).",
    )

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.label or self.path

    def get_absolute_url(self) -> str:
        return reverse("traces:source-detail", args=[self.pk])


class TraceFile(models.Model):
    """Every file or database ingested, ok or not: failed files stay visible here."""

    class FileStatus(models.TextChoices):
        OK = "ok", "ok"
        ERROR = "error", "error"

    # The file's resolved path; an archive member is "<archive path>!/<member>".
    path = models.CharField(max_length=2000, unique=True)
    # What a user knows it as (the upload's name, the member's name).
    display_name = models.CharField(max_length=500)
    format = models.CharField(max_length=20, choices=Format.choices, blank=True)
    size = models.BigIntegerField(default=0)
    mtime = models.DateTimeField(null=True, blank=True)
    # Exact, for the rescan fast path: same size and mtime_ns means unchanged, unread.
    mtime_ns = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    # sha256 of the files read together with this one (workflow's events.db), by path.
    companions = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=FileStatus.choices, default=FileStatus.OK)
    error = models.TextField(blank=True)
    # What the file holds, as last read: {"runs": n, "steps": n, "calls": n, "links": n,
    # "logs": n, "parser_version": n}. A run held by several files belongs to the one read last.
    produced = models.JSONField(default=dict, blank=True)
    source = models.ForeignKey(
        TraceSource, null=True, blank=True, on_delete=models.SET_NULL, related_name="files"
    )
    uploaded = models.BooleanField(default=False)
    first_seen_at = models.DateTimeField(default=timezone.now)
    ingested_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-checked_at"]
        indexes = [
            # /files/ (and a source's files), most recently checked first, optionally by
            # status; each ends with the keyset's tie-breaker, so a page reads only its rows.
            models.Index(fields=["-checked_at", "-id"], name="tracefile_checked"),
            models.Index(fields=["status", "-checked_at", "-id"], name="tracefile_status_checked"),
            models.Index(fields=["source", "-checked_at", "-id"], name="tracefile_source_checked"),
            # An upload's content already ingested at another path (loader._known_content).
            models.Index(fields=["sha256"], name="tracefile_sha256"),
        ]

    def __str__(self) -> str:
        return self.display_name

    def get_absolute_url(self) -> str:
        return reverse("traces:file-detail", args=[self.pk])


def stale_cutoff():
    """A running run whose source was last written before this is stale."""
    return timezone.now() - settings.TRACER_STALE_AFTER


class Outcome(models.Model):
    """How a run or a step went: the fields both have, in the source's words too."""

    status = models.CharField(max_length=12, choices=Status.choices)
    raw_status = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        abstract = True


class PathField(models.TextField):
    """Text compared code point by code point on every database (a step's path is
    sorted as Python sorts it: SQLite's default BINARY, PostgreSQL's "C" collation
    whatever the database's own locale)."""

    def db_parameters(self, connection):
        parameters = super().db_parameters(connection)
        if connection.vendor == "postgresql":
            parameters["collation"] = "C"
        return parameters


class StepNameField(models.CharField):
    """A log line's step's name, kept on the line for the log search (a key of its
    index, search/index.py LOGS; migration 0043): the ingest writes it with the line.
    A line the ORM writes (bulk_create too) takes its step's name as stored, whatever
    it held: '' without a step; the name of the step loaded on it, or of the step the
    line was read from the database with (LogEntry.from_db), without a query; else
    one query for the step. A step is never renamed (a re-sync writes its lines again)."""

    def pre_save(self, model_instance, add):
        value = self._name_of(model_instance)
        setattr(model_instance, self.attname, value)
        model_instance._stored_step_name = (model_instance.step_id, value)
        return value

    @staticmethod
    def _name_of(line) -> str:
        step_id = line.step_id
        if step_id is None:
            return ""
        step_id_named, name = getattr(line, "_stored_step_name", (None, None))
        if step_id_named == step_id and name is not None:
            return name
        step = line._meta.get_field("step")
        if step.is_cached(line):  # the step loaded on it (assigning step_id drops it)
            return line.step.name
        # Its name alone, not its input and output.
        steps = step.related_model._base_manager.filter(pk=step_id)
        return steps.values_list("name", flat=True).get()


class ItemProgress(models.Model):
    """Progress counters over items (the runs format's items_*), on a run or a step."""

    items_total = models.BigIntegerField(null=True, blank=True)
    items_processed = models.BigIntegerField(null=True, blank=True)
    items_succeeded = models.BigIntegerField(null=True, blank=True)
    items_failed = models.BigIntegerField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def has_progress(self) -> bool:
        return self.items_total is not None or self.items_processed is not None


class RunQuerySet(models.QuerySet):
    def stale(self) -> RunQuerySet:
        """Runs that say "running" but whose source has been quiet too long (is_stale)."""
        return self.filter(status=Status.RUNNING, source_updated_at__lt=stale_cutoff())


class Run(Outcome, ItemProgress):
    format = models.CharField(max_length=20, choices=Format.choices)
    # "" when the source's ids are globally unique, else the database it came from.
    origin = models.CharField(max_length=1000, blank=True, default="")
    external_id = models.CharField(max_length=255)
    name = models.CharField(max_length=500, blank=True)
    type = models.CharField(max_length=200, blank=True)
    trigger = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=255, blank=True)
    output_counters = models.JSONField(default=dict, blank=True)
    progress_label = models.CharField(max_length=500, blank=True)
    truncated = models.BooleanField(default=False)
    # Times derived from something else than the trace (greentic: the file's mtime).
    times_estimated = models.BooleanField(default=False)
    attributes = models.JSONField(default=dict, blank=True)
    # When a re-read of its source no longer held this run (a file overwritten by the
    # next invocation, rows deleted by the writer's retention); the run is kept.
    left_source_at = models.DateTimeField(null=True, blank=True)

    # Summaries filled at ingest.
    step_count = models.IntegerField(default=0)
    steps_pending = models.IntegerField(default=0)
    steps_running = models.IntegerField(default=0)
    steps_succeeded = models.IntegerField(default=0)
    steps_failed = models.IntegerField(default=0)
    steps_skipped = models.IntegerField(default=0)
    steps_cancelled = models.IntegerField(default=0)
    call_count = models.IntegerField(default=0)
    link_count = models.IntegerField(default=0)
    log_count = models.IntegerField(default=0)
    # Items that failed inside its steps, whatever the steps' own status.
    steps_items_failed = models.IntegerField(default=0)
    max_depth = models.IntegerField(default=0)
    # The earliest start and latest finish among its steps: the time axis of a run
    # that records no times of its own, without reading its steps per request.
    steps_started_at = models.DateTimeField(null=True, blank=True)
    steps_finished_at = models.DateTimeField(null=True, blank=True)
    # The length of the run's critical path (traces/critical_path.py), kept at ingest
    # with its steps' Step.critical_ms; null: none (no step has a start time).
    critical_path_ms = models.FloatField(null=True, blank=True)
    # The smallest and largest id of its steps, noted at ingest: the store writes a
    # run's steps together, so every one of them lies between the two (and, when they
    # are as many ids apart as it has steps, no other run's step does). Find in run
    # bounds its full-text lookups by them (queries/find.py) without reading the ids
    # of the run's 100,000 steps; null: not noted (no steps, or written otherwise).
    step_id_min = models.BigIntegerField(null=True, blank=True)
    step_id_max = models.BigIntegerField(null=True, blank=True)

    # Bookkeeping for idempotent re-ingest.
    source_file = models.ForeignKey(
        TraceFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    source_updated_at = models.DateTimeField(null=True, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    completeness = models.JSONField(null=True, blank=True)
    ingested_at = models.DateTimeField(default=timezone.now)
    # The time the runs list orders by: the start the source recorded; NULL when the
    # times are estimated (greentic: the file's time) or unknown, so those runs are
    # listed after the timed ones, newest written (highest id) first, and a folder of
    # files copied today does not push today's timed runs off the first page.
    listed_at = models.GeneratedField(
        expression=models.Case(
            models.When(times_estimated=False, then=models.F("started_at")),
            default=None,
            output_field=models.DateTimeField(),
        ),
        output_field=models.DateTimeField(null=True, blank=True),
        db_persist=True,
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["format", "origin", "external_id"], name="run_unique_per_format_origin"
            ),
        ]
        indexes = [
            # The runs list: newest first, optionally by status or format.
            KeysetIndex(fields=["-started_at", "-id"], name="run_started"),
            KeysetIndex(fields=["status", "-started_at", "-id"], name="run_status_started"),
            KeysetIndex(fields=["format", "-started_at", "-id"], name="run_format_started"),
            KeysetIndex(fields=["type", "-started_at", "-id"], name="run_type_started"),
            # The runs list's other sorts (either direction).
            models.Index(fields=["-duration_ms", "-id"], name="run_duration"),
            models.Index(fields=["-steps_failed", "-id"], name="run_steps_failed"),
            models.Index(fields=["-step_count", "-id"], name="run_step_count"),
            models.Index(fields=["name", "id"], name="run_name"),
            # The runs list's "no longer in its source" filter (few rows: a partial index).
            KeysetIndex(
                fields=["-started_at", "-id"],
                condition=models.Q(left_source_at__isnull=False),
                name="run_left_source_started",
            ),
            # Runs whose steps' items failed, newest first: the failing-now strip and
            # the runs list's "with failed items" (few rows: a partial index).
            models.Index(
                fields=["-started_at", "-id"],
                condition=models.Q(steps_items_failed__gt=0),
                name="run_items_failed_started",
            ),
            # Retention (prune) and "recently ingested".
            models.Index(fields=["ingested_at"], name="run_ingested"),
            # The runs list newest (or oldest) first, alone or by one filter. Not
            # KeysetIndexes: both directions list NULLs last, so PostgreSQL walks these
            # backwards for oldest first (ASC NULLS LAST) and their NULLS LAST twins
            # (0024; run_duration's 0011) forwards for newest first.
            models.Index(fields=["-listed_at", "-id"], name="run_listed"),
            models.Index(fields=["status", "-listed_at", "-id"], name="run_status_listed"),
            models.Index(fields=["format", "-listed_at", "-id"], name="run_format_listed"),
            models.Index(fields=["type", "-listed_at", "-id"], name="run_type_listed"),
            models.Index(
                fields=["-listed_at", "-id"],
                condition=models.Q(left_source_at__isnull=False),
                name="run_left_source_listed",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.external_id

    def get_absolute_url(self) -> str:
        return reverse("traces:run-detail", args=[self.pk])

    @property
    def is_stale(self) -> bool:
        """Says "running" but its source has not changed for a while (Run.objects.stale())."""
        if self.status != Status.RUNNING or self.source_updated_at is None:
            return False
        return self.source_updated_at < stale_cutoff()

    @property
    def live_until(self):
        """Where the open times of a running run end (its "so far" duration, its
        time axis, its running steps): now while it is live; its last write once
        it is stale, for a run that died stopped there. None when not running."""
        if self.status != Status.RUNNING:
            return None
        return self.source_updated_at if self.is_stale else timezone.now()


class RunCount(models.Model):
    """A read model of the runs: how many runs of one format and type have one
    status. The store keeps it in step with the Run rows, in the same transaction
    (the runs list's summary and type choices read it; its tests recount it)."""

    format = models.CharField(max_length=20, choices=Format.choices)
    run_type = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices)
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            # The store's upserts (ON CONFLICT) go by this key.
            models.UniqueConstraint(fields=["format", "run_type", "status"], name="runcount_key"),
        ]

    def __str__(self) -> str:
        return f"{self.format} {self.run_type} {self.status}: {self.count}"


class Step(Outcome, ItemProgress):
    # No index of their own on the foreign keys (db_index=False): step_tree, step_run_seq
    # and the unique key lead with run, step_children with parent (which PostgreSQL's
    # foreign key checks use too when steps are deleted).
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps", db_index=False)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="children",
        db_index=False,
    )
    # The source's step id (or seq): unique in the run and stable across re-ingests,
    # so step URLs survive a running run being updated.
    key = models.CharField(max_length=255)
    seq = models.IntegerField(help_text="Order of the step in its run (parents first).")
    position = models.IntegerField(help_text="Order among its siblings.")
    depth = models.IntegerField(default=0)
    name = models.CharField(max_length=500, blank=True)
    type = models.CharField(max_length=200, blank=True)
    attempt = models.IntegerField(null=True, blank=True)
    retries = models.IntegerField(null=True, blank=True)
    retry_of = models.CharField(max_length=255, blank=True)
    max_retries = models.IntegerField(null=True, blank=True)
    loop_index = models.IntegerField(null=True, blank=True)
    entity_type = models.CharField(max_length=200, blank=True)
    entity_id = models.CharField(max_length=500, blank=True)
    # A step with a subject entity: its time (its start, else its run's), stored so
    # the entity page's subject list is read newest first from an index.
    entity_seen_at = models.DateTimeField(null=True, blank=True)
    # A failed step's time: its start, else its run's (a greentic step has none), as
    # the failure causes read models date it; NULL for the other steps. Stored at
    # ingest so the failed-steps list is ranged and read newest first by the same
    # time as the causes box counts, from an index.
    failed_at = models.DateTimeField(null=True, blank=True)
    # A failed step of a run whose times are estimated (Run.times_estimated, greentic:
    # the file's time), so its failed_at is that estimate; NULL for the other steps.
    # Kept with failed_at, in its index, so the failing-now strip counts these failures
    # apart from the timed ones without reading each one's run.
    failed_at_estimated = models.BooleanField(null=True, blank=True)
    truncated = models.BooleanField(default=False)
    never_closed = models.BooleanField(default=False)
    # A grouping step the source does not have; not counted among the run's steps.
    synthetic = models.BooleanField(default=False)
    attributes = models.JSONField(default=dict, blank=True)
    # A failed step's error without its particulars (queries.errors.normalise_error),
    # its failure cause; blank for the other steps. Written once, at ingest.
    error_cause = models.CharField(max_length=NORMALISED_MAX, blank=True)
    # The names along the tree down to this step, with loop indexes and repeat
    # numbers (ingest/step_paths.py): two runs' steps are compared by it.
    path = PathField(default="", blank=True)

    # Summaries filled at ingest.
    child_count = models.IntegerField(default=0)
    # This step or one below it failed: "failed only" keeps these as context.
    failed_subtree = models.BooleanField(default=False)
    call_count = models.IntegerField(default=0)
    link_count = models.IntegerField(default=0)
    # Its own time on the run's critical path in ms (0: its children fill its part);
    # null: not on the path. Kept at ingest (traces/critical_path.py).
    critical_ms = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "key"], name="step_unique_key_per_run"),
        ]
        indexes = [
            # A run's tree, one level at a time (parent NULL = roots), in order. The
            # keyset indexes end with the tie-breaker id: without it PostgreSQL sorts
            # every root of the level (SQLite has the rowid at the end of every index).
            models.Index(fields=["run", "parent", "position", "id"], name="step_tree"),
            # Its roots: PostgreSQL takes `parent IS NULL` for a filter, not for a fixed
            # value of the index's second column, so the level above would be sorted.
            models.Index(
                fields=["run", "position", "id"],
                condition=models.Q(parent__isnull=True),
                name="step_roots",
            ),
            # A run's steps flat in order (timeline, API).
            models.Index(fields=["run", "seq", "id"], name="step_run_seq"),
            # Two runs compared (queries/compare.py): each run's steps in path order,
            # and the summary's join by path, read from the index alone.
            models.Index(
                fields=["run", "path", "status", "duration_ms", "synthetic"], name="step_run_path"
            ),
            # Children of an expanded step.
            models.Index(fields=["parent", "position"], name="step_children"),
            # Failed steps across runs, newest first by their failure's time (failed_at),
            # in a range of it; ends with `synthetic` for the count, as the next one, and
            # `failed_at_estimated`, which the failing-now strip counts apart and the
            # list's `times=` filter keeps, both from the index alone, and the cause, which
            # that filter's causes box then groups from the index alone too (the read
            # model does not split by estimate: 33 ms of heap blocks for a day's 17,000
            # failures at 10 M steps). It leads with the (constant) status so SQLite,
            # without statistics, prefers it to the next one's equal `status = ?` prefix
            # and sorts nothing.
            KeysetIndex(
                fields=[
                    "status",
                    "-failed_at",
                    "-id",
                    "synthetic",
                    "failed_at_estimated",
                    "error_cause",
                ],
                condition=models.Q(status="failed"),
                name="step_failed_at",
            ),
            # Steps of any status across runs, newest first. It ends with
            # `synthetic`, which the lists leave out, so their "10,000+" count reads the
            # index alone instead of 10,001 rows of the table.
            KeysetIndex(
                fields=["status", "-started_at", "-id", "synthetic"], name="step_status_started"
            ),
            # "Failed only" inside a run.
            models.Index(fields=["run", "failed_subtree", "seq", "id"], name="step_run_failed"),
            # A run's critical path in order (its tab and API): only the steps on it.
            models.Index(
                fields=["run", "seq", "id"],
                condition=models.Q(critical_ms__isnull=False),
                name="step_critical",
            ),
            # A step's own subject entity: the entity page's subject list, newest first.
            # Only the steps that have one (a few in a hundred of the quick sets'; each
            # step written into it cost PostgreSQL ~3 µs, RESULTS §17d); its readers say
            # `entity_type > ''` as it does (SQLite uses a partial index only then).
            KeysetIndex(
                fields=["entity_type", "entity_id", "-entity_seen_at", "-id"],
                condition=models.Q(entity_type__gt=""),
                name="step_entity_seen",
            ),
            # The failed steps of one cause, newest first by their failure's time.
            KeysetIndex(
                fields=["error_cause", "-failed_at", "-id"],
                condition=~models.Q(error_cause=""),
                name="step_cause_failed_at",
            ),
            # The timeline zoomed to a time window (queries/timeline.py `overlapping`): the
            # steps starting in it (their rows are read for the page anyway), and the long
            # or open-ended ones that began before it, tested for being still open from the
            # index alone (finished_at in it): they are walked longest first.
            models.Index(fields=["run", "started_at", "id"], name="step_run_started"),
            models.Index(
                fields=["run", "duration_ms", "started_at", "finished_at"], name="step_run_duration"
            ),
            # Its minimap's failed steps, read from the index alone: only the failed ones
            # (2.4 % of the steps; 0.8 MB at 1 M steps, not a 50 MB index of every step).
            # `status` in it too: SQLite 3.40 reads the row to test the condition otherwise;
            # `synthetic`: PostgreSQL may count the failed steps (the steps list's "10,000+")
            # from this small index, so it holds what that count reads, as step_status_started.
            models.Index(
                fields=["run", "status", "started_at", "synthetic"],
                condition=models.Q(status="failed"),
                name="step_run_failed_started",
            ),
            # The logs tab's step picker: a run's step names with their counts, and the
            # steps of one name, read from the index alone.
            models.Index(fields=["run", "name"], name="step_run_name"),
            # The log search's step name (search/logs.py): the name's steps read from
            # the index (not every run's in step_run_name), their ids from it alone.
            models.Index(fields=["name", "id"], name="step_name"),
        ]

    def __str__(self) -> str:
        return self.name or self.key

    def get_absolute_url(self) -> str:
        return reverse("traces:step-detail", args=[self.run_id, self.key])


class Call(models.Model):
    # Indexed by call_step and call_run below, not by a foreign key index of each.
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="calls", db_index=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="calls", db_index=False)
    key = models.CharField(max_length=255)
    position = models.IntegerField()
    tool = models.CharField(max_length=200, blank=True)
    operation = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices)
    raw_status = models.CharField(max_length=50, blank=True)
    attempt = models.IntegerField(null=True, blank=True)
    retry_of = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    attributes = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            # A step's calls in order.
            models.Index(fields=["step", "position", "id"], name="call_step"),
            # Retention deletes by run.
            models.Index(fields=["run"], name="call_run"),
        ]

    def __str__(self) -> str:
        return f"{self.tool}.{self.operation}"


class EntityLink(models.Model):
    class LinkType(models.TextChoices):
        INPUT = "input", "input"
        OUTPUT = "output", "output"
        AFFECTED = "affected", "affected"

    # Indexed by link_step and link_run below, not by a foreign key index of each.
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="links", db_index=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="links", db_index=False)
    link_type = models.CharField(max_length=50)
    entity_type = models.CharField(max_length=200)
    entity_id = models.CharField(max_length=500)
    external_id = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(null=True, blank=True)
    # Its created_at, else its step's start, else its run's: stored at ingest so an
    # entity's links are read newest first from an index.
    seen_at = models.DateTimeField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            # An entity's page: every step that touched it, newest first.
            KeysetIndex(
                fields=["entity_type", "entity_id", "-seen_at", "-id"], name="link_entity_seen"
            ),
            # A step's panel: its links.
            models.Index(fields=["step"], name="link_step"),
            # Retention deletes by run.
            models.Index(fields=["run"], name="link_run"),
            # Search by the source system's id.
            models.Index(fields=["external_id"], name="link_external"),
        ]

    def __str__(self) -> str:
        return f"{self.link_type} {self.entity_type}:{self.entity_id}"


class LogEntry(models.Model):
    # Indexed by log_run_seq and log_step_seq below, which lead with them.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="logs", db_index=False)
    step = models.ForeignKey(
        Step, null=True, blank=True, on_delete=models.CASCADE, related_name="logs", db_index=False
    )
    seq = models.IntegerField()
    time = models.DateTimeField(null=True, blank=True)
    level = models.CharField(max_length=20, blank=True)
    message = models.TextField(blank=True)
    # Its step's name (StepNameField).
    step_name = StepNameField(max_length=500, blank=True, default="")
    fields = models.JSONField(null=True, blank=True)
    duplicate = models.BooleanField(default=False)
    attributes = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "log entries"
        indexes = [
            # A run's logs in order (optionally one level).
            models.Index(fields=["run", "seq", "id"], name="log_run_seq"),
            # A step's panel: its logs.
            models.Index(fields=["step", "seq", "id"], name="log_step_seq"),
            # /logs/ without words, newest first: one level's lines, or a time range's.
            models.Index(fields=["level", "id"], name="log_level"),
            models.Index(fields=["time", "id"], name="log_time"),
            # A word's lines in a time range (search/logs.py): the first and last time
            # of each coarse id bucket (65,536 ids), then of each fine bucket (1,024)
            # of the range's end buckets, then the range's lowest and highest id in
            # its end fine buckets; the id buckets searched are those between.
            models.Index(models.F("id").bitrightshift(16), "time", "id", name="log_bucket_time"),
            models.Index(models.F("id").bitrightshift(10), "time", "id", name="log_fine_time"),
        ]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:80]}"

    @classmethod
    def from_db(cls, db, field_names, values):
        line = super().from_db(db, field_names, values)
        # Its step_name as stored with its step (StepNameField: saved again, no query).
        loaded = line.__dict__
        line._stored_step_name = (loaded.get("step_id"), loaded.get("step_name"))
        return line


class ApiToken(models.Model):
    """A secret for the JSON API (`Authorization: Bearer <token>`). Only its SHA-256
    is stored: the token itself is shown once, when it is made."""

    PREFIX = "trc_"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=200, blank=True, help_text="What it is for, e.g. CI.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name or 'token'} ({self.user})"

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def generate(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)

    @classmethod
    def issue(cls, user, name: str = "") -> tuple[ApiToken, str]:
        """A new token for `user`: the row, and the token to show once."""
        token = cls.generate()
        return cls.objects.create(user=user, name=name, token_hash=cls.hash(token)), token


class IngestJob(models.Model):
    """An ingest that runs in a background worker (an upload, a source rescan):
    the request that starts it returns at once and the page follows its progress."""

    class Kind(models.TextChoices):
        UPLOAD = "upload", "upload"
        RESCAN = "rescan", "rescan"

    class JobStatus(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    paths = models.JSONField(default=list)
    display_names = models.JSONField(default=dict, blank=True)
    source = models.ForeignKey(
        TraceSource, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    uploaded = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    files_total = models.IntegerField(default=0)
    files_done = models.IntegerField(default=0)
    current = models.CharField(max_length=500, blank=True)
    # IngestReport.summary() and the per-file results, once done.
    summary = models.JSONField(default=dict, blank=True)
    results = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("traces:job-detail", args=[self.pk])

    @property
    def finished(self) -> bool:
        return self.status in (self.JobStatus.DONE, self.JobStatus.FAILED)


class FailureCause(models.Model):
    """A read model of failed steps: how many failed of one cause on one UTC day, in
    runs of one format and type. The store keeps it in step with the Step rows, in
    the same transaction (queries.causes reads it; its tests recount it)."""

    cause = models.CharField(max_length=NORMALISED_MAX)
    # The UTC day of the step's time (its start, else its run's); NO_DAY without one.
    day = models.DateField()
    format = models.CharField(max_length=20, choices=Format.choices)
    run_type = models.CharField(max_length=200, blank=True)
    count = models.IntegerField(default=0)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # The store's upserts (ON CONFLICT) go by this key.
            models.UniqueConstraint(
                fields=["cause", "day", "format", "run_type"], name="failurecause_key"
            ),
        ]
        indexes = [
            # The causes box over a range of days.
            models.Index(fields=["day"], name="failurecause_day"),
        ]

    def __str__(self) -> str:
        return f"{self.cause} ({self.day}: {self.count})"


# What FailureSlice keeps of a step's name (its key stays within PostgreSQL's limit).
SLICE_NAME_MAX = 100


class FailureSlice(models.Model):
    """A finer read model of failed steps than FailureCause: how many failed of one
    cause in one 10-minute UTC slot, in runs of one format and type, under one step
    name (its first 100 characters). The steps page reads it for a time range that
    is not whole days (the last hour, day or week) and for a cause's breakdown by
    run type and step name. The store keeps it with FailureCause, in the same
    transaction (ingest.failure_counts; its tests recount it)."""

    cause = models.CharField(max_length=NORMALISED_MAX)
    # The start of the slot of the step's time (its start, else its run's);
    # causes.NO_SLOT without one.
    slot = models.DateTimeField()
    format = models.CharField(max_length=20, choices=Format.choices)
    run_type = models.CharField(max_length=200, blank=True)
    step_name = models.CharField(max_length=SLICE_NAME_MAX, blank=True)
    count = models.IntegerField(default=0)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # The store's upserts (ON CONFLICT), and one cause's slices over a range.
            models.UniqueConstraint(
                fields=["cause", "slot", "format", "run_type", "step_name"],
                name="failureslice_key",
            ),
        ]
        indexes = [
            # The causes box over a range of slots.
            models.Index(fields=["slot"], name="failureslice_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.cause} ({self.slot} {self.step_name}: {self.count})"


class EntityCounter(models.Model):
    """A read model of one entity: what its links and subject steps add up to. The
    store keeps it in step with the EntityLink and Step rows, in the same
    transaction (ingest.entity_counts; its tests recount it)."""

    entity_type = models.CharField(max_length=200)
    entity_id = models.CharField(max_length=500)
    # The greatest external id of its links, as the list shows one.
    external_id = models.CharField(max_length=500, blank=True)
    links = models.IntegerField(default=0)
    # Links by type (the list) ...
    links_read = models.IntegerField(default=0)
    links_written = models.IntegerField(default=0)
    links_affected = models.IntegerField(default=0)
    links_other = models.IntegerField(default=0)
    # ... and distinct steps by link type (the entity page's header).
    steps_read = models.IntegerField(default=0)
    steps_written = models.IntegerField(default=0)
    steps_affected = models.IntegerField(default=0)
    steps_other = models.IntegerField(default=0)
    # Steps whose own subject it is (Step.entity_type/entity_id).
    subjects = models.IntegerField(default=0)
    # Distinct runs that reach it by a link or a subject step.
    runs = models.IntegerField(default=0)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # The entities list's order and keyset, and the store's upserts (ON CONFLICT).
            models.UniqueConstraint(fields=["entity_type", "entity_id"], name="entitycounter_key"),
        ]
        indexes = [
            # The search: an id pasted without its type, or an external id.
            models.Index(fields=["entity_id"], name="entitycounter_id"),
            models.Index(fields=["external_id"], name="entitycounter_external_id"),
        ]

    def __str__(self) -> str:
        return f"{self.entity_type}:{self.entity_id} ({self.links} links)"


class EntityTypeCounter(models.Model):
    """The entities list's type pills: links and subject steps per entity type, kept
    with EntityCounter."""

    entity_type = models.CharField(max_length=200, unique=True)
    links = models.IntegerField(default=0)
    subjects = models.IntegerField(default=0)

    class Meta:
        ordering = ["entity_type"]

    def __str__(self) -> str:
        return f"{self.entity_type} ({self.links} links, {self.subjects} subjects)"


class IngestClaim(models.Model):
    """A share of one parallel ingest (`ingest --jobs N`): a few of the files a
    directory walk found, taken by one worker at a time, so that workers on one
    database split the files and never read the same one (traces/ingest/parallel.py)."""

    class ClaimState(models.TextChoices):
        TODO = "todo", "todo"
        TAKEN = "taken", "taken"
        DONE = "done", "done"

    batch = models.CharField(max_length=64)
    # The paths as given to the loader, in the order of the walk.
    paths = models.JSONField(default=list)
    # Found by walking a directory: a file in no known format is skipped there, not failed.
    walked = models.BooleanField(default=True)
    state = models.CharField(max_length=8, choices=ClaimState.choices, default=ClaimState.TODO)
    worker = models.CharField(max_length=200, blank=True)
    # When its batch was planned: a batch nobody touched for long was left by a
    # planner that died, and is pruned (parallel.prune_abandoned).
    created_at = models.DateTimeField(default=timezone.now)
    # Refreshed while the worker lives, and when it is done: a share taken longer ago
    # than the lease is taken again (its worker died).
    taken_at = models.DateTimeField(null=True, blank=True)
    # The loader's FileResult.as_dict() of each file, once done.
    results = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [
            # A worker's next share: the batch's first one in state todo (or taken long ago).
            models.Index(fields=["batch", "state", "id"], name="ingestclaim_next"),
        ]

    def __str__(self) -> str:
        return f"{self.batch} #{self.pk} ({self.state}, {len(self.paths)} files)"


class TypeBucket(models.Model):
    """A read model of the runs over time: how many runs of one format and type,
    started in one UTC hour, have one status and a duration in one log-spaced bin
    (ingest.type_trends: bins, the percentile error bound). The store keeps it in
    step with the Run rows, in the same transaction; the trends pages read it."""

    format = models.CharField(max_length=20, choices=Format.choices)
    run_type = models.CharField(max_length=200, blank=True)
    # The UTC hour the run started in; type_trends.NO_HOUR for a run without a start.
    hour = models.DateTimeField()
    status = models.CharField(max_length=12, choices=Status.choices)
    # type_trends.duration_bin(); NO_DURATION for a run without one (or still running).
    bin = models.SmallIntegerField()
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            # A type's trends over a range of hours, and the store's upserts (ON CONFLICT).
            models.UniqueConstraint(
                fields=["run_type", "hour", "format", "status", "bin"], name="typebucket_key"
            ),
        ]
        indexes = [
            # The types list over a range of hours (every type).
            models.Index(fields=["hour"], name="typebucket_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.format} {self.run_type} {self.hour:%Y-%m-%d %H}h {self.status}: {self.count}"


class TypeStep(models.Model):
    """A read model of the steps of each run type: per step name (its first 200
    characters) and UTC day of the run's start, how many steps, how many failed, and
    their summed duration, kept with TypeBucket (the trends page's slowest and most
    failing steps)."""

    format = models.CharField(max_length=20, choices=Format.choices)
    run_type = models.CharField(max_length=200, blank=True)
    # The UTC day its run started on; causes.NO_DAY for a run without a start.
    day = models.DateField()
    name = models.CharField(max_length=200, blank=True)
    steps = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    # Steps with a duration, and their durations summed in microseconds (each
    # taken between 0 and type_trends.MAX_STEP_MS).
    timed = models.IntegerField(default=0)
    total_us = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # A type's steps over a range of days, and the store's upserts (ON CONFLICT).
            models.UniqueConstraint(
                fields=["run_type", "day", "format", "name"], name="typestep_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.format} {self.run_type} {self.day} {self.name}: {self.steps}"


class StepGroup(models.Model):
    """A read model of repeated steps: under one parent (NULL: the run's roots), the
    children of one name (kind "name"), or a loop's iterations, the children grouped
    by loop index (kind "loop"), when there are at least ingest.step_groups.MIN_GROUP
    of them; and how many roots a run has (kind "root"). Kept by the store with the
    Step rows, in the same transaction: a run written again is counted again, a
    deleted run's groups go with its steps. The tree's container rows read it
    (iterations, p50/p95/max, failures, the slowest)."""

    NAME = "name"
    LOOP = "loop"
    # How many roots a run has (only a run with more than a tree window of them).
    ROOT = "root"

    # (The index below serves the foreign keys: none has one of its own.)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", db_index=False)
    # The steps' parent; NULL for the run's roots. No constraint: the rows go with
    # their run's steps (store.delete_run_children), in the same statement list.
    parent = models.ForeignKey(
        Step,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    kind = models.CharField(max_length=4)
    # The children's name (kind "name"); blank for a loop's iterations.
    name = models.CharField(max_length=500, blank=True)
    # Steps (or iterations), those failed (a failed step, or one with failed items, in
    # an iteration), their failed items, and those with a duration.
    count = models.IntegerField()
    failed = models.IntegerField(default=0)
    items_failed = models.BigIntegerField(default=0)
    timed = models.IntegerField(default=0)
    # Durations in ms, exact (nearest-rank percentiles of the group, computed whole at
    # ingest); an iteration's is its steps' span, or their sum without times.
    min_ms = models.FloatField(null=True)
    p50_ms = models.FloatField(null=True)
    p95_ms = models.FloatField(null=True)
    max_ms = models.FloatField(null=True)
    # Counts of the durations in step_groups.BINS equal bins from min_ms to max_ms.
    bins = models.JSONField(default=list)
    # The slowest step (kind "loop": the first step of the slowest iteration) and its
    # loop index; the first failed one.
    slowest = models.ForeignKey(
        Step,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    slowest_index = models.IntegerField(null=True)
    first_failed = models.ForeignKey(
        Step,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    # The first input field whose value differs between the group's steps (what tells
    # them apart when they have no loop index); blank when none does.
    differs_by = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [
            # A tree level's groups: the parents of a window's rows (or the roots).
            models.Index(fields=["run", "parent", "kind", "name"], name="stepgroup_parent"),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} parent {self.parent_id} {self.kind} {self.name}: {self.count}"


class RunMinimap(models.Model):
    """A read model of what the timeline's minimap reads of a run of more than
    queries.timeline.MINIMAP_SAMPLE steps: the start times of the steps it samples
    (MINIMAP_SAMPLE of them, spread over the run's seq for its step count) and of its
    failed steps (the first MINIMAP_FAILED + 1 in start order), each as ms since the
    epoch, computed by the database as the page would (queries.timeline). Kept by
    the store with the Step rows, in the same transaction (ingest.minimaps): a run
    written again is read again, a deleted run's row goes with its steps. The page
    reads one row instead of a thousand index probes and the failed steps' range."""

    run = models.OneToOneField(Run, primary_key=True, on_delete=models.CASCADE, related_name="+")
    # The run's step count the sample was drawn for (the page uses the row only then).
    step_count = models.IntegerField()
    # The sampled steps' starts (the steps with a start), in seq order.
    starts = models.JSONField(default=list)
    # The failed steps' starts, in start order.
    failed = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"run {self.run_id}: {len(self.starts)} starts, {len(self.failed)} failed"
