import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone

from traces.ingest.batches import retried
from traces.ingest.parallel import prune_abandoned
from traces.ingest.store import delete_runs
from traces.models import Run

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match:
        raise CommandError(f"--older-than {text!r}: use a number and a unit, e.g. 30d, 12h, 90m")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = (
        "Delete runs (with their steps, calls, links and logs) older than an age, or only "
        "those no longer in their source (--left-source), in batches; and the shares of "
        "parallel ingests left long ago by a process that died."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=parse_age,
            metavar="AGE",
            help="runs started this long ago; with --left-source: that left their source then",
        )
        parser.add_argument(
            "--left-source",
            action="store_true",
            help="only runs their source no longer holds (the history of overwritten files)",
        )
        parser.add_argument(
            "--ingest-shares",
            action="store_true",
            help="only the shares of parallel ingests left long ago (every prune deletes them)",
        )
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--dry-run", action="store_true", help="only count what would go")

    def handle(self, *args, older_than, left_source, ingest_shares, batch_size, dry_run, **options):
        if older_than is None and not left_source and not ingest_shares:
            raise CommandError(
                "Say what to delete: --older-than AGE, --left-source, or both"
                " (or only --ingest-shares)."
            )
        if not dry_run:
            shares = prune_abandoned()
            if shares or ingest_shares:
                self.stdout.write(f"deleted {shares} shares of parallel ingests left long ago")
        if older_than is None and not left_source:
            return
        old, what = self._selection(older_than, left_source)
        if dry_run:
            self.stdout.write(f"{_runs(old.count())} would be deleted ({what})")
            return
        deleted = 0
        while True:
            batch = list(old.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not batch:
                break
            retried(lambda batch=batch: delete_runs(batch), locked_too=True)  # a deadlock: again
            deleted += len(batch)
        self.stdout.write(f"deleted {_runs(deleted)} ({what})")

    @staticmethod
    def _selection(older_than, left_source):
        cutoff = timezone.now() - older_than if older_than is not None else None
        if left_source:
            runs = Run.objects.filter(left_source_at__isnull=False)
            if cutoff is None:
                return runs, "no longer in their source"
            when = f"{cutoff:%Y-%m-%d %H:%M}"
            return runs.filter(
                left_source_at__lt=cutoff
            ), f"no longer in their source before {when}"
        # A run's age is its start, or when it was ingested if it never started.
        old = Run.objects.filter(
            Q(started_at__lt=cutoff) | Q(started_at__isnull=True, ingested_at__lt=cutoff)
        )
        return old, f"older than {cutoff:%Y-%m-%d %H:%M}"


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"
