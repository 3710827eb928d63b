import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from traces.ingest.store import delete_runs
from traces.models import Run

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match:
        raise CommandError(f"--older-than {text!r}: use a number and a unit, e.g. 30d, 12h, 90m")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = "Delete runs (with their steps, calls, links and logs) older than an age, in batches."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, type=parse_age, metavar="AGE")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--dry-run", action="store_true", help="only count what would go")

    def handle(self, *args, older_than, batch_size, dry_run, **options):
        cutoff = timezone.now() - older_than
        # A run's age is its start, or when it was ingested if it never started.
        old = Run.objects.filter(
            Q(started_at__lt=cutoff) | Q(started_at__isnull=True, ingested_at__lt=cutoff)
        )
        if dry_run:
            self.stdout.write(
                f"{old.count()} runs would be deleted (older than {cutoff:%Y-%m-%d %H:%M})"
            )
            return
        deleted = 0
        while True:
            batch = list(old.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not batch:
                break
            with transaction.atomic():
                delete_runs(batch)
            deleted += len(batch)
        self.stdout.write(f"deleted {deleted} runs older than {cutoff:%Y-%m-%d %H:%M}")
